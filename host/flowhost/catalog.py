"""Plugin discovery: entry points in group ``flowhost.plugins``, loaded by name, lazily.

Listing reads entry-point metadata only (through stevedore's on-disk cache) and imports no
plugin module; a workflow imports just the plugins it names, so a broken plugin never
breaks discovery nor a workflow that does not use it.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from typing import Any

from flowhost.invokers import Invoker
from flowhost.problems import did_you_mean

PLUGIN_GROUP = "flowhost.plugins"


@dataclass(frozen=True, slots=True)
class PluginEntry:
    """What is known about an installed plugin without importing it."""

    name: str
    target: str  # "module:Class"
    distribution: str | None = None
    distribution_version: str | None = None
    transport: str = "local"


class PluginLoadError(Exception):
    """A plugin is unknown, fails to import, or is not a valid plugin class."""

    def __init__(self, name: str, reason: str, suggestion: str | None = None) -> None:
        super().__init__(f"plugin '{name}': {reason}")
        self.name = name
        self.reason = reason
        self.suggestion = suggestion


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    from stevedore import NamedExtensionManager

    # Naming no plugin makes stevedore read the (cached) entry points without importing any.
    manager: Any = NamedExtensionManager(
        PLUGIN_GROUP, names=[], on_missing_entrypoints_callback=None
    )
    entry_points: list[importlib.metadata.EntryPoint] = manager.list_entry_points()
    return entry_points


_SECTION = re.compile(r"^\[(?P<group>[^\]]+)\]\s*$")


def _distributions_by_entry() -> dict[str, tuple[str, str]]:
    """Map ``name=target`` of each flowhost plugin entry point to (distribution, version).

    Reads each distribution's ``entry_points.txt`` as text and skips those without our
    group, which is much cheaper than parsing every file.
    """
    found: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        text = dist.read_text("entry_points.txt")
        if not text or PLUGIN_GROUP not in text:
            continue
        in_group = False
        for line in text.splitlines():
            section = _SECTION.match(line)
            if section:
                in_group = section.group("group").strip() == PLUGIN_GROUP
            elif in_group and "=" in line:
                name, _, target = line.partition("=")
                found[f"{name.strip()}={target.strip()}"] = (dist.metadata["Name"], dist.version)
    return found


class Catalog:
    """Name → plugin. Local plugins come from entry points."""

    def __init__(self) -> None:
        self._entries: dict[str, PluginEntry] | None = None
        self._invokers: dict[str, Invoker] = {}

    def entries(self, *, with_distributions: bool = False) -> dict[str, PluginEntry]:
        if self._entries is None or with_distributions:
            dists = _distributions_by_entry() if with_distributions else {}
            entries: dict[str, PluginEntry] = {}
            for ep in _entry_points():
                if ep.name in entries:
                    continue  # first on sys.path wins, as Python imports do
                dist = dists.get(f"{ep.name}={ep.value}")
                entries[ep.name] = PluginEntry(
                    name=ep.name,
                    target=ep.value,
                    distribution=dist[0] if dist else None,
                    distribution_version=dist[1] if dist else None,
                )
            self._entries = entries
        return self._entries

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name: str) -> bool:
        return name in self.entries()

    def get(self, name: str) -> Invoker:
        """The invoker for ``name``, importing its module on first use."""
        invoker = self._invokers.get(name)
        if invoker is None:
            invoker = self._load(name)
            self._invokers[name] = invoker
        return invoker

    def _load(self, name: str) -> Invoker:
        if name.startswith(("grpc://", "grpcs://")):
            raise PluginLoadError(
                name, "remote gRPC plugins are not available in this version of flowhost"
            )
        if name not in self.entries():
            raise PluginLoadError(
                name,
                f"no plugin of that name is installed (entry-point group '{PLUGIN_GROUP}')",
                did_you_mean(name, self.entries()),
            )
        cls = _import_plugin_class(name)
        from flowhost.invokers.local import LocalInvoker

        try:
            plugin = cls()
        except Exception as exc:
            raise PluginLoadError(
                name, f"cannot be instantiated: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return LocalInvoker(plugin)
        except Exception as exc:
            raise PluginLoadError(
                name, f"its Inputs/Outputs schemas cannot be built: {type(exc).__name__}: {exc}"
            ) from None


def _import_plugin_class(name: str) -> Any:
    from stevedore import NamedExtensionManager

    from flowhost_sdk import check_plugin_class

    failures: list[str] = []

    def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        failures.append(f"import of {entry_point.value} failed: {type(exc).__name__}: {exc}")

    manager = NamedExtensionManager(
        PLUGIN_GROUP,
        names=[name],
        on_load_failure_callback=on_failure,
        on_missing_entrypoints_callback=None,
    )
    if failures:
        raise PluginLoadError(name, failures[0])
    if name not in manager:
        raise PluginLoadError(name, "its entry point disappeared while loading")
    cls = manager[name].plugin
    problems = check_plugin_class(cls)
    if problems:
        raise PluginLoadError(name, "; ".join(problems))
    if cls.name != name:
        raise PluginLoadError(
            name,
            f"the entry point is named '{name}' but the class says name = '{cls.name}'",
        )
    return cls
