"""One interface for calling a plugin, whether it is imported in-process or remote.

The engine and the recovery ladder only ever see an ``Invoker``. Whatever goes wrong inside
comes out as one of the SDK's error classes (``TransientError``, ``PermanentError``,
``NeedsIntervention``), so recovery does not depend on the transport.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from flowhost_sdk import InvocationContext, PermanentError

Transport = Literal["local", "grpc"]


@dataclass(frozen=True, slots=True)
class RemoteDescriptor:
    """What a plugin server says of one of its plugins (``ListPlugins``)."""

    name: str
    version: str
    description: str
    idempotent: bool
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedSchemas:
    """A remote plugin's descriptor as its server last reported it, and when (unix time;
    recorded again at most hourly while nothing changes, so a check seldom writes)."""

    descriptor: RemoteDescriptor
    reported_at: float


@dataclass(frozen=True, slots=True)
class Unreached:
    """A remote plugin whose server could not be reached when the workflow was checked:
    why, what to do, and when the schemas it is checked against were reported (None: none
    are known, and its schemas accept anything). Its first call asks the server again."""

    reason: str
    fix: str | None
    reported_at: float | None


def unreached(invoker: Invoker) -> Unreached | None:
    """How ``invoker`` was not reached at check time; None for one that was (or is local)."""
    found: Unreached | None = getattr(invoker, "unreached", None)
    return found


class SchemaMemory(Protocol):
    """Where the descriptors remote plugins reported are kept (the state store), so that a
    workflow can be checked against them while a server cannot be reached. ``target`` is
    the server's ``grpc://HOST:PORT`` (or ``grpcs://``)."""

    def recorded_schemas(self, target: str, plugin: str) -> RecordedSchemas | None: ...

    def record_schemas(self, target: str, plugins: Iterable[RemoteDescriptor]) -> None: ...


class Invoker(Protocol):
    name: str
    version: str
    description: str
    idempotent: bool
    transport: Transport
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]

    async def invoke(self, inputs: dict[str, Any], ctx: InvocationContext) -> dict[str, Any]:
        """Validated, JSON-ready outputs; raises an SDK error class on failure."""
        ...


class InvalidOutputs(PermanentError):
    """The plugin returned something its own ``Outputs`` schema rejects."""


def unencodable_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first text in JSON-like ``value`` that is not valid Unicode
    (a lone surrogate, as ``os.listdir`` gives for a file name that is not UTF-8), or None.
    Nothing downstream (the store, the terminal, JSON for other languages) can carry it."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else (path or "(root)")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _encodes(str(key)):
                return where
            found = unencodable_field(item, where)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unencodable_field(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable_outputs(plugin: str, field: str) -> InvalidOutputs:
    return InvalidOutputs(
        f"outputs of {plugin}: field '{field}' holds text that is not valid Unicode (a lone "
        "surrogate, as os.listdir() gives for a file name that is not UTF-8)",
        hint="Decode such bytes in the plugin, e.g. os.fsencode(name).decode('utf-8', "
             "'replace'), or return them in another form")


class InvalidInputs(PermanentError):
    """The resolved inputs do not fit the plugin's ``Inputs`` schema."""
