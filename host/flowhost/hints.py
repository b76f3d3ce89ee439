"""Hints: what a human should do about an error.

Taken, in order, from the error itself (``hint=``), the step's ``manual.hint``, or the hint
registry: the built-in rules below and functions published by third parties in the
entry-point group ``flowhost.hints`` (each takes ``(error_type: str, message: str)`` and
returns a hint or None; they are loaded on the first failure, never at start-up).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

HINT_GROUP = "flowhost.hints"
HintRule = Callable[[str, str], str | None]
log = logging.getLogger(__name__)

_MODULE = re.compile(r"No module named '([\w.]+)'")
_SERVICE = re.compile(r"(redis|postgres|postgresql|mysql|mongo\w*|rabbitmq|memcached|kafka)",
                      re.IGNORECASE)
_PATH = re.compile(r"[Pp]ermission denied:? '?([^'\s]+)'?")
_VERSION = re.compile(r"requires ([\w.-]+)\s*([<>=!~]=?[\w.*]+)|([\w.-]+) version .* "
                      r"(?:is )?(?:not supported|incompatible)", re.IGNORECASE)

_SERVICE_COMMANDS = {
    "redis": "redis-server --daemonize yes",
    "postgres": "sudo service postgresql start",
    "postgresql": "sudo service postgresql start",
    "mysql": "sudo service mysql start",
    "memcached": "memcached -d",
    "rabbitmq": "sudo service rabbitmq-server start",
}


def _missing_module(error_type: str, message: str) -> str | None:
    match = _MODULE.search(message)
    if error_type in {"ModuleNotFoundError", "ImportError"} or match:
        module = match.group(1).split(".")[0] if match else "the missing package"
        return f"Install it: pip install {module}"
    return None


def _connection_refused(error_type: str, message: str) -> str | None:
    lowered = message.lower()
    if "connection refused" not in lowered and error_type != "ConnectionRefusedError":
        return None
    service = _SERVICE.search(message)
    if service:
        name = service.group(1).lower()
        command = _SERVICE_COMMANDS.get(name, f"start {name}")
        return f"Start {name.capitalize()}: {command}"
    return "Start the service it connects to, then retry"


def _permission_denied(error_type: str, message: str) -> str | None:
    if "permission denied" not in message.lower() and error_type != "PermissionError":
        return None
    path = _PATH.search(message)
    target = path.group(1) if path else "<file>"
    return f"Fix the file permissions: chmod u+rwx {target} (or run as a user who may)"


def _version_incompatible(error_type: str, message: str) -> str | None:
    match = _VERSION.search(message)
    if match is None and "version" not in message.lower():
        return None
    if match and match.group(1):
        return f"Upgrade it: pip install --upgrade '{match.group(1)}{match.group(2)}'"
    if match and match.group(3):
        return f"Upgrade it: pip install --upgrade {match.group(3)}"
    if "incompatible" in message.lower() or "not supported" in message.lower():
        return "Upgrade the package it names: pip install --upgrade <package>"
    return None


BUILTIN_RULES: tuple[HintRule, ...] = (
    _missing_module,
    _connection_refused,
    _permission_denied,
    _version_incompatible,
)


class HintRegistry:
    def __init__(self, rules: tuple[HintRule, ...] = BUILTIN_RULES,
                 *, load_entry_points: bool = True) -> None:
        self._builtin = rules
        self._extra: list[HintRule] | None = None if load_entry_points else []

    def _plugins(self) -> list[HintRule]:
        if self._extra is None:
            self._extra = []
            from importlib.metadata import entry_points

            for ep in entry_points(group=HINT_GROUP):
                try:
                    self._extra.append(ep.load())
                except Exception as exc:  # a broken hint rule must not break a run
                    log.warning("hint rule %s failed to load: %s", ep.name, exc)
        return self._extra

    def hint_for(self, error_type: str, message: str) -> str | None:
        # Third-party rules first: they know their own errors better than our guesses.
        for rule in (*self._plugins(), *self._builtin):
            try:
                hint = rule(error_type, message)
            except Exception as exc:
                log.warning("hint rule %r failed: %s", rule, exc)
                continue
            if hint:
                return hint
        return None


def choose_hint(error_hint: str | None, step_hint: str | None, registry: HintRegistry,
                error_type: str, message: str) -> str | None:
    """What to tell the person: the error's own hint and the step's ``manual.hint`` side by
    side (the workflow's author knows this step, the plugin knows its error: neither hides
    the other), else a registered rule's guess."""
    if error_hint and step_hint and step_hint not in error_hint:
        return f"{error_hint}; {step_hint}"
    return error_hint or step_hint or registry.hint_for(error_type, message)
