"""``GrpcInvoker``: a remote plugin behind the ``Invoker`` protocol, so that the engine and
the ladder call it, and recover from its failures, as they do an imported plugin.

What a call leans on (the process's channel, the server's description of its plugins, the
meaning of a failed call) comes from the package's other modules; here is what one call
does: the inputs as JSON, the step's deadline, ``InvokeStream`` or else ``Invoke``, and the
outputs checked against the declared output schema, since the host has no pydantic model
for them.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import time
from typing import Any

import jsonschema
from grpc import aio

from flowhost.invokers import (
    InvalidInputs,
    InvalidOutputs,
    RemoteDescriptor,
    SchemaMemory,
    Transport,
    Unreached,
    unencodable_field,
    unencodable_outputs,
)
from flowhost.invokers.grpc.channels import CHANNELS, ChannelPool, StreamCall
from flowhost.invokers.grpc.discovery import descriptors
from flowhost.invokers.grpc.endpoint import Endpoint
from flowhost.invokers.grpc.failures import RemoteUnavailable, call_error, no_such_method
from flowhost.plugin_log import secrets_for
from flowhost_sdk import InvocationContext, PermanentError, protocol
from flowhost_sdk._proto import plugin_pb2 as pb


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()  # YAML dates; pydantic on the other side parses them
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be sent as JSON")


class GrpcInvoker:
    """A remote plugin behind the ``Invoker`` protocol.

    ``name`` is what the workflow calls it (its URL, or its name in ``[remote]``), so a step
    that uses it is not taken for a substitution; ``served_as`` is its name on the server.

    ``unreached``: the server could not be reached when the workflow was checked, and the
    descriptor is the one it last reported (``memory``), or one that accepts anything. The
    first call then asks the server for its plugins again: no answer is a transient error
    (the ladder retries, then falls back); an answer replaces the descriptor (and is
    recorded in ``memory``), so outputs are checked against what the server says now.
    """

    transport: Transport = "grpc"

    def __init__(self, descriptor: RemoteDescriptor, endpoint: Endpoint, *,
                 name: str | None = None, default_timeout: float = 3600.0,
                 pool: ChannelPool | None = None, unreached: Unreached | None = None,
                 memory: SchemaMemory | None = None, connect_timeout: float = 3.0) -> None:
        self.name = name or descriptor.name
        self.served_as = descriptor.name
        self.endpoint = endpoint
        self.url = f"{endpoint.target.url}/{descriptor.name}"
        self.label = self.name if self.name == self.url else f"{self.name} (at {self.url})"
        self.unreached = unreached
        self._memory = memory
        self._connect_timeout = connect_timeout
        self._default_timeout = default_timeout
        self._pool = pool or CHANNELS
        self._adopt(descriptor)

    def _adopt(self, descriptor: RemoteDescriptor) -> None:
        self.version = descriptor.version
        self.description = descriptor.description
        self.idempotent = descriptor.idempotent
        self.input_schema = descriptor.input_schema
        self.output_schema = descriptor.output_schema
        self._outputs = jsonschema.Draft202012Validator(descriptor.output_schema)

    async def _describe_again(self, ctx: InvocationContext) -> None:
        """Ask the server, unreached at check time, for the plugin's descriptor."""
        listing = await self._pool.list_call(self.endpoint)
        try:
            response = await listing(pb.ListPluginsRequest(),
                                     timeout=min(self._connect_timeout, self._timeout(ctx)))
        except aio.AioRpcError as exc:
            raise call_error(exc, self.label, self.endpoint) from None
        try:
            served = descriptors(self.endpoint, response)
        except RemoteUnavailable as exc:
            raise PermanentError(str(exc)) from None
        descriptor = served.get(self.served_as)
        if descriptor is None:
            raise PermanentError(
                f"the server at {self.endpoint.target.url} does not serve '{self.served_as}'; "
                f"it serves: {', '.join(sorted(served)) or 'nothing'}",
                hint="Fix the plugin's URL, or serve that plugin there")
        self._adopt(descriptor)
        self.unreached = None
        if self._memory is not None:  # off the loop: it writes to the state dir
            await asyncio.to_thread(self._memory.record_schemas, self.endpoint.target.url,
                                    list(served.values()))

    async def invoke(self, inputs: dict[str, Any], ctx: InvocationContext) -> dict[str, Any]:
        if self.unreached is not None:
            await self._describe_again(ctx)
        try:
            payload = json.dumps(inputs, default=_json_default, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInputs(f"the inputs of {self.name} cannot be sent as JSON: {exc}"
                                ) from None
        request = pb.InvokeRequest(plugin=self.served_as, inputs_json=payload, run_id=ctx.run_id,
                                   step_id=ctx.step_id, attempt=ctx.attempt,
                                   plugin_attempt=ctx.plugin_attempt,
                                   masked=secrets_for(ctx, payload.decode("utf-8")))
        stream = await self._pool.stream_call(self.endpoint)
        if stream is not None:
            outputs = await self._invoke_stream(stream, request, ctx)
            if outputs is not None:
                return self._check_outputs(outputs)
            self._pool.without_stream(self.endpoint)
        call = await self._pool.invoke_call(self.endpoint)
        try:
            response = await call(request, timeout=self._timeout(ctx))
        except aio.AioRpcError as exc:
            raise call_error(exc, self.label, self.endpoint) from None
        return self._check_outputs(response.outputs_json)

    def _timeout(self, ctx: InvocationContext) -> float:
        timeout = (ctx.deadline - time.monotonic() if ctx.deadline is not None
                   else self._default_timeout)
        return max(timeout, 0.001)

    async def _invoke_stream(self, stream: StreamCall, request: pb.InvokeRequest,
                             ctx: InvocationContext) -> bytes | None:
        """The outputs (JSON) InvokeStream brought, reporting its progress on the way; None
        when the server has no InvokeStream."""
        call = stream(request, timeout=self._timeout(ctx))
        result: bytes | None = None
        updates = 0
        try:
            async for update in call:
                updates += 1
                kind = update.WhichOneof("update")
                if kind == "progress" and result is None:
                    fraction = update.progress.fraction
                    if math.isfinite(fraction):  # NaN says nothing about how far it is
                        ctx.progress(fraction, update.progress.message)
                elif kind == "result" and result is None:
                    result = update.result.outputs_json
        except aio.AioRpcError as exc:
            if updates == 0 and no_such_method(exc):
                return None
            raise call_error(exc, self.label, self.endpoint) from None
        finally:
            if not call.done():  # the host gave up (timeout, Ctrl-C): so does the call
                call.cancel()
        if result is None:
            raise InvalidOutputs(f"remote plugin {self.label}: InvokeStream ended without "
                                 "a result")
        return result

    def _check_outputs(self, raw: bytes) -> dict[str, Any]:
        try:
            outputs = json.loads(raw, parse_constant=protocol.reject_constant)
        except ValueError as exc:
            raise InvalidOutputs(f"outputs of {self.label} are not valid JSON: "
                                 f"{exc}") from None
        if not isinstance(outputs, dict):
            raise InvalidOutputs(f"outputs of {self.label} are not a JSON "
                                 f"object but {type(outputs).__name__}")
        if not self._outputs.is_valid(outputs):
            raise InvalidOutputs(self._describe(outputs))
        bad = unencodable_field(outputs)  # JSON's "\udce9" escapes decode to a lone surrogate
        if bad is not None:
            raise unencodable_outputs(self.label, bad)
        return outputs

    def _describe(self, outputs: dict[str, Any]) -> str:
        errors = sorted(self._outputs.iter_errors(outputs),
                        key=lambda e: [str(p) for p in e.absolute_path])
        parts = []
        for error in errors[:5]:
            field = ".".join(str(p) for p in error.absolute_path)
            if error.validator == "required" and isinstance(error.validator_value, list):
                missing = [f for f in error.validator_value if f not in error.instance]
                for name in missing:
                    parts.append(f"field '{'.'.join(filter(None, (field, name)))}': missing")
                continue
            parts.append(f"field '{field or '(root)'}': {error.message}")
        return (f"outputs of {self.label} do not match its declared output "
                f"schema: " + "; ".join(parts))
