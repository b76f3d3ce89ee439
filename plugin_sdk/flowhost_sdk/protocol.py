"""The wire rules of the plugin protocol (``protos/flowhost/v1/plugin.proto``), in one place.

Both ends use them: the SDK's server turns a plugin's exception into a status code and
trailing metadata (``status_for_error``), and clients (the host's gRPC invoker, the
conformance kit) turn a failed call back into the SDK's error classes
(``error_from_status``), so a remote plugin fails exactly like an imported one. The rules
are written out for implementers in other languages in ``protos/README.md``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

import grpc

from flowhost_sdk.errors import (
    ErrorKind,
    NeedsIntervention,
    PermanentError,
    PluginError,
    TransientError,
)

SERVICE = "flowhost.v1.PluginService"
LIST_PLUGINS = f"/{SERVICE}/ListPlugins"
INVOKE = f"/{SERVICE}/Invoke"
INVOKE_STREAM = f"/{SERVICE}/InvokeStream"  # optional: servers from the first .proto lack it

KIND_KEY = "flowhost-error-kind"  # transient | permanent | intervention: overrides the code
HINT_KEY = "flowhost-hint"  # what a human should do; UTF-8, percent-encoded
RETRY_AFTER_KEY = "flowhost-retry-after"  # seconds, a decimal number (transient errors)
TYPE_KEY = "flowhost-error-type"  # the exception's class name, for messages and hints
# Any of these in the trailers means the plugin itself failed (not the call): its message is
# shown as the plugin wrote it.
PLUGIN_ERROR_KEYS = frozenset({KIND_KEY, HINT_KEY, TYPE_KEY, RETRY_AFTER_KEY})
RAISE_LIMIT_HINT = ("Raise the limit on both ends: flowhost-plugin serve --max-message-bytes N "
                    "and max_message_bytes in the [grpc] table of flowhost.toml")

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_TEXT = 2000  # longest hint or status message sent: metadata must stay well under 8 KiB

Code = grpc.StatusCode
TRANSIENT_CODES = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED,
                             Code.ABORTED, Code.CANCELLED})
# Codes the contract leaves open are permanent: a retry cannot fix a missing permission.
CODE_FOR_KIND: dict[ErrorKind, grpc.StatusCode] = {
    "transient": Code.UNAVAILABLE,
    "permanent": Code.FAILED_PRECONDITION,
    "intervention": Code.FAILED_PRECONDITION,
}
_KINDS: frozenset[str] = frozenset(CODE_FOR_KIND)
_KIND_NAMED: dict[str, ErrorKind] = {kind: kind for kind in CODE_FOR_KIND}
_BASES: dict[str, type[PluginError]] = {
    "transient": TransientError,
    "permanent": PermanentError,
    "intervention": NeedsIntervention,
}
# What Python gRPC servers say when a handler raised: a bug in the plugin, not the network.
_APPLICATION_FAILURE = re.compile(r"^(Exception calling application|Exception iterating|"
                                  r"Unexpected error)", re.IGNORECASE)
_TOO_LARGE = re.compile(r"message larger than max", re.IGNORECASE)
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

Metadata = tuple[tuple[str, str], ...]


def encode_text(text: str) -> str:
    """A metadata-safe form of ``text``: UTF-8, with bytes outside printable ASCII and ``%``
    percent-encoded (like ``grpc-message``); plain ASCII text is left as it is."""
    # A lone surrogate (a file name from os.listdir) has no UTF-8 form: sent as \udce9.
    return quote(text[:MAX_TEXT], safe=_SAFE, errors="backslashreplace")


def sendable_text(text: str) -> str:
    """``text`` cut to MAX_TEXT and with every lone surrogate written as ``\\udce9``, so that
    gRPC can encode it as a status message (UTF-8)."""
    text = text[:MAX_TEXT]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def decode_text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return unquote(value)


def status_for_error(exc: BaseException) -> tuple[grpc.StatusCode, str, Metadata]:
    """The status code, message and trailing metadata that report ``exc`` to the host.

    Never raises: whatever a plugin raised (an exception whose ``__str__`` fails, a hint or
    ``retry_after`` set to something odd afterwards) must still become that call's status.
    """
    name = _type_name(exc)
    kind = _declared_kind(exc)
    if kind is None:  # any other exception is a bug in the plugin: permanent
        kind, code, hint, retry_after = "permanent", Code.INTERNAL, None, None
        text = _text_of(exc)
        details = f"{name}: {text}" if text else name
    else:
        code = CODE_FOR_KIND[kind]
        details = _text_of(exc) or name
        hint = _attribute(exc, "hint")
        retry_after = _attribute(exc, "retry_after") if kind == "transient" else None
    metadata: list[tuple[str, str]] = [(KIND_KEY, kind)]
    if name.isascii() and name.isidentifier():
        metadata.append((TYPE_KEY, name))
    if isinstance(hint, str) and hint:
        metadata.append((HINT_KEY, encode_text(hint)))
    seconds = _usable_seconds(retry_after)
    if seconds is not None:
        metadata.append((RETRY_AFTER_KEY, f"{seconds:g}"))
    return code, sendable_text(details), tuple(metadata)


def _type_name(exc: BaseException) -> str:
    name = getattr(type(exc), "__name__", "")
    return name if isinstance(name, str) and name else "Exception"


def _declared_kind(exc: BaseException) -> ErrorKind | None:
    """The kind a PluginError declares (an unknown one counts as permanent); None for any
    other exception."""
    if not isinstance(exc, PluginError):
        return None
    kind = _attribute(exc, "kind")
    return _KIND_NAMED.get(kind, "permanent") if isinstance(kind, str) else "permanent"


def _attribute(exc: BaseException, name: str) -> object:
    try:
        return getattr(exc, name, None)
    except Exception:  # a property that fails: as if it were not set
        return None


def _text_of(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return "(the error's message could not be read)"
    return text if isinstance(text, str) else ""


def _usable_seconds(value: object) -> float | None:
    """A pause the host can honour, or None: not a number, negative, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_status(code: grpc.StatusCode, details: str | None,
                      metadata: Iterable[tuple[str, Any]] | None) -> PluginError:
    """The SDK error a failed call stands for (CONTRACT §3).

    The code decides the kind: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
    CANCELLED and an UNKNOWN that came from the transport are transient, everything else is
    permanent; ``flowhost-error-kind`` overrides it. Two cases are refined because a retry
    cannot help them: an UNKNOWN that a server reports for an exception in its handler, and
    a message past the size limit.
    """
    meta: dict[str, Any] = {}
    for key, value in metadata or ():
        meta.setdefault(key.lower(), value)
    message = details or code.name
    kind = decode_text(meta.get(KIND_KEY, "")).strip().lower()
    hint = decode_text(meta[HINT_KEY]) if HINT_KEY in meta else None
    if kind not in _KINDS:
        kind = _kind_for_code(code, message)
        if kind == "permanent" and _TOO_LARGE.search(message) and hint is None:
            hint = RAISE_LIMIT_HINT
    type_name = decode_text(meta.get(TYPE_KEY, "")).strip()
    if type_name and message.startswith(f"{type_name}: "):
        message = message[len(type_name) + 2:]  # shown again by whoever prints the type
    elif type_name and message == type_name:
        message = ""  # an exception without text: the server could only send its type
    cls = _error_class(kind, type_name)
    if issubclass(cls, TransientError):
        return cls(message, hint=hint, retry_after=_seconds(meta.get(RETRY_AFTER_KEY)))
    return cls(message, hint=hint)


def reject_constant(name: str) -> Any:
    """For ``json.loads(parse_constant=...)``: NaN and Infinity are not JSON, and a plugin in
    another language could not read them."""
    raise ValueError(f"{name} is not a JSON value")


def _kind_for_code(code: grpc.StatusCode, message: str) -> ErrorKind:
    if code is Code.UNKNOWN:
        return "permanent" if _APPLICATION_FAILURE.match(message) else "transient"
    if code is Code.RESOURCE_EXHAUSTED and _TOO_LARGE.search(message):
        return "permanent"
    return "transient" if code in TRANSIENT_CODES else "permanent"


def _seconds(value: Any) -> float | None:
    """The ``flowhost-retry-after`` trailer as seconds; None when it is not a finite number
    >= 0 (a server in another language may send anything, and a bad value must not fail
    the mapping of the error it came with)."""
    if value is None:
        return None
    try:
        seconds = float(decode_text(value))
    except (TypeError, ValueError):
        return None
    return _usable_seconds(seconds)


@functools.lru_cache(maxsize=256)
def _error_class(kind: str, type_name: str) -> type[PluginError]:
    """The SDK class for ``kind``, or a subclass of it named like the remote exception, so
    messages, hint rules and metrics see the same error type as for an imported plugin."""
    base = _BASES[kind]
    if not type_name or type_name == base.__name__ or not (
            type_name.isascii() and type_name.isidentifier()):
        return base
    return type(type_name, (base,), {"__module__": "flowhost_sdk.remote",
                                     "__doc__": f"{type_name}, raised by a remote plugin."})
