"""One interface for calling a plugin, whether it is imported in-process or remote.

The engine and the recovery ladder only ever see an ``Invoker``. Whatever goes wrong inside
comes out as one of the SDK's error classes (``TransientError``, ``PermanentError``,
``NeedsIntervention``), so recovery does not depend on the transport.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from flowhost_sdk import InvocationContext, PermanentError

Transport = Literal["local", "grpc"]


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


class InvalidInputs(PermanentError):
    """The resolved inputs do not fit the plugin's ``Inputs`` schema."""
