"""Invoke a plugin served over gRPC (``flowhost.v1.PluginService``) as if it were imported.

``ListPlugins`` gives the plugin's name, version, idempotency and JSON Schemas, so static
checks and the ladder treat it exactly like a local plugin. Calls go over one ``grpc.aio``
channel per target (and event loop), shared by every step and run of the process; each
carries the step's timeout as its deadline. A target that may be several servers (a list
in ``[remote]``, or a ``dns:///`` name) gets gRPC's own ``round_robin`` policy with
client-side health checking (``healthCheckConfig``): calls go in turn to the servers whose
``grpc.health.v1`` Watch says SERVING, and one that stops (or is not reached) is left out
until it serves again; the channel re-resolves a DNS name when a connection closes, which
servers cause with a maximum connection age, so new replicas get calls.

A call is ``InvokeStream``, whose progress updates become the plugin's ``ctx.progress()``,
unless the server answered UNIMPLEMENTED to it (a server written from the first .proto):
then ``Invoke``, and the pool remembers that the server has no stream for a while, so the
extra round trip is made once. A failed call comes out as the SDK error the status code
and metadata stand for (``flowhost_sdk.protocol``); outputs are checked against the
plugin's declared output schema, since the host has no pydantic model for them.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import math
import os
import re
import socket
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# grpc's core logs handshake failures and the like on stderr; the host reports them itself.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import jsonschema
from grpc import aio
from grpc_health.v1 import health_pb2

from flowhost.config import HostConfig, TargetList, Targets
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
from flowhost.plugin_log import secrets_for
from flowhost_sdk import InvocationContext, PermanentError, PluginError, protocol
from flowhost_sdk._proto import plugin_pb2 as pb

Code = grpc.StatusCode
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
InvokeCall = Callable[..., Awaitable[pb.InvokeResponse]]
ListCall = Callable[..., Awaitable[pb.ListPluginsResponse]]
StreamCall = Callable[..., "aio.UnaryStreamCall[Any, pb.InvokeUpdate]"]
# How long a server that answered UNIMPLEMENTED to InvokeStream is called with Invoke before
# it is asked again (it may have been upgraded meanwhile: a daemon lives for weeks).
NO_STREAM_SECONDS = 600.0
# Several servers: gRPC's round_robin over those whose health (the whole server, service "")
# is SERVING; an SDK server says NOT_SERVING while its worker threads are all busy and once
# it is stopping, so it is left out then too.
BALANCED_SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
})


class RemoteUnavailable(Exception):
    """A plugin server cannot be reached or does not answer as a plugin server should.
    ``down``: no answer at all (not running, unreachable, too slow), which may pass; as
    opposed to an answer that is wrong (not a plugin server, TLS refused, bad schemas)."""

    def __init__(self, message: str, fix: str | None = None, *, down: bool = False) -> None:
        super().__init__(message)
        self.fix = fix
        self.down = down


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A target and everything needed to open a channel to it (hashable: the pool's key)."""

    target: Targets
    max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def create(cls, target: Targets, config: HostConfig) -> Endpoint:
        """Read the target's TLS files from the config; raises RemoteUnavailable."""
        settings = config.tls_for(target)
        files: dict[str, bytes | None] = {"ca": None, "cert": None, "key": None}
        if settings is not None:
            for field in files:
                path = getattr(settings, field)
                if path is not None:
                    try:
                        files[field] = path.read_bytes()
                    except OSError as exc:
                        raise RemoteUnavailable(
                            f"[tls.\"{target.members[0].address}\"] {field} in {config.path}: "
                            f"cannot read "
                            f"{path}: {exc.strerror or exc}") from None
        server_name = settings.server_name if settings is not None else None
        hosts = {member.host for member in target.members}
        if server_name is None and isinstance(target, TargetList) and len(hosts) == 1:
            # A list is one channel to addresses: the name certificates are checked against
            # is the host the entries share, as it would be for each alone.
            server_name = next(iter(hosts))
        return cls(target, config.grpc.max_message_bytes, files["ca"], files["cert"],
                   files["key"], server_name)

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # A restarted server is found again quickly, not after minutes of backoff.
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.target.balanced:
            options.append(("grpc.service_config", BALANCED_SERVICE_CONFIG))
        return options

    def channel_target(self) -> str:
        """What the channel is opened on: ``HOST:PORT``, ``dns:///HOST:PORT``, or for a list
        the ``ipv4:`` (``ipv6:``) target of all its addresses, gRPC's form for several
        servers behind one channel. A list's host names are looked up here, when the
        channel opens; a name whose addresses change belongs in a ``dns:///`` target."""
        if not isinstance(self.target, TargetList):
            return self.target.channel_target
        found: dict[int, list[str]] = {4: [], 6: []}
        for member in self.target.members:
            for version, address in _addresses(member.host, member.port):
                if address not in found[version]:
                    found[version].append(address)
        # One target holds one address family; IPv4 when there are both (the usual case of
        # a name that has both; a list of v6 literals gets ipv6:).
        if found[4]:
            return "ipv4:" + ",".join(found[4])
        if found[6]:
            return "ipv6:" + ",".join(found[6])
        return self.target.members[0].address  # nothing resolves: gRPC says so on each call

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    def sync_channel(self) -> grpc.Channel:
        if self.target.tls:
            return grpc.secure_channel(self.channel_target(), self.credentials(),
                                       self.options())
        return grpc.insecure_channel(self.channel_target(), self.options())

    def aio_channel(self, target: str | None = None) -> aio.Channel:
        """A channel on ``target`` (default: ``channel_target()``)."""
        target = target or self.channel_target()
        if self.target.tls:
            return aio.secure_channel(target, self.credentials(), self.options())
        return aio.insecure_channel(target, self.options())

    def looks_up_names(self) -> bool:
        """Whether ``channel_target()`` resolves host names (a list with some)."""
        return isinstance(self.target, TargetList) and any(
            not _is_ip(member.host) for member in self.target.members)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _addresses(host: str, port: int) -> list[tuple[int, str]]:
    """(IP version, ``ADDRESS:PORT``) of a host: itself when it is an IP address, else what
    it resolves to (nothing when it does not)."""
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []
        ips = [ipaddress.ip_address(info[4][0]) for info in infos]
    return [(ip.version, f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")
            for ip in ips]


class ChannelPool:
    """One ``grpc.aio`` channel per endpoint and event loop, opened on first use.

    A channel belongs to the loop it was opened on; the CLI runs one loop per run, a daemon
    one loop for all runs. A channel is closed when its loop shuts down (``asyncio.run``
    closes asynchronous generators, and one of those holds it), or by ``close()``.
    """

    def __init__(self) -> None:
        self._open: dict[Endpoint, weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _Open]] = {}
        self._no_stream: dict[Endpoint, float] = {}  # -> until when (monotonic)

    async def invoke_call(self, endpoint: Endpoint) -> InvokeCall:
        """The Invoke method on the endpoint's channel for the running loop."""
        return (await self._opened(endpoint)).call

    async def list_call(self, endpoint: Endpoint) -> ListCall:
        """The ListPlugins method on the endpoint's channel for the running loop."""
        return (await self._opened(endpoint)).listing

    async def stream_call(self, endpoint: Endpoint) -> StreamCall | None:
        """The InvokeStream method on the endpoint's channel for the running loop; None
        while the server is known not to have it."""
        until = self._no_stream.get(endpoint)
        if until is not None:
            if time.monotonic() < until:
                return None
            del self._no_stream[endpoint]
        return (await self._opened(endpoint)).stream

    def without_stream(self, endpoint: Endpoint) -> None:
        """The server answered UNIMPLEMENTED to InvokeStream: use Invoke for a while."""
        self._no_stream[endpoint] = time.monotonic() + NO_STREAM_SECONDS

    async def _opened(self, endpoint: Endpoint) -> _Open:
        loop = asyncio.get_running_loop()
        per_loop = self._open.get(endpoint)
        if per_loop is None:
            per_loop = self._open[endpoint] = weakref.WeakKeyDictionary()
        found = per_loop.get(loop)
        if found is not None:
            return found
        target = None
        if endpoint.looks_up_names():  # in a thread: a slow DNS must not stall the loop
            target = await asyncio.to_thread(endpoint.channel_target)
            found = per_loop.get(loop)  # another call may have opened it meanwhile
            if found is not None:
                return found
        channel = endpoint.aio_channel(target)
        call: InvokeCall = channel.unary_unary(
            protocol.INVOKE, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString)
        stream: StreamCall = channel.unary_stream(
            protocol.INVOKE_STREAM, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeUpdate.FromString)
        listing: ListCall = channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        # The loop finalizes asynchronous generators when it shuts down: this one closes
        # the channel then. It is kept here, since dropping it would close the channel now.
        closer = self._close_at_shutdown(endpoint, channel)
        opened = per_loop[loop] = _Open(channel, call, stream, listing, closer)  # before awaits
        await closer.__anext__()
        return opened

    async def _close_at_shutdown(self, endpoint: Endpoint, channel: aio.Channel
                                 ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            per_loop = self._open.get(endpoint)
            if per_loop is not None:  # forget it, so the finished loop can be collected
                per_loop.pop(asyncio.get_running_loop(), None)
            await channel.close()

    def channels(self) -> list[aio.Channel]:
        """The channels open on the running loop."""
        loop = asyncio.get_running_loop()
        return [per_loop[loop].channel for per_loop in self._open.values() if loop in per_loop]

    async def close(self) -> None:
        """Close every channel opened on the running loop."""
        loop = asyncio.get_running_loop()
        for per_loop in self._open.values():
            found = per_loop.pop(loop, None)
            if found is not None:
                await found.closer.aclose()


@dataclass(slots=True)
class _Open:
    channel: aio.Channel
    call: InvokeCall
    stream: StreamCall
    listing: ListCall
    closer: AsyncGenerator[None, None]


CHANNELS = ChannelPool()  # the process's channels


def list_plugins(endpoint: Endpoint, timeout: float) -> dict[str, RemoteDescriptor]:
    """The plugins a server hosts, by name (blocking: run it in a thread inside a loop)."""
    with endpoint.sync_channel() as channel:
        method = channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        try:
            response: pb.ListPluginsResponse = method(pb.ListPluginsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise RemoteUnavailable(*_unreachable(endpoint, exc, timeout),
                                    down=_no_answer(endpoint, exc)) from None
    return descriptors(endpoint, response)


def descriptors(endpoint: Endpoint, response: pb.ListPluginsResponse
                ) -> dict[str, RemoteDescriptor]:
    """The plugins of a ListPlugins answer, by name; RemoteUnavailable for a bad schema."""
    found: dict[str, RemoteDescriptor] = {}
    for plugin in response.plugins:
        schemas = []
        for what, text in (("input", plugin.input_schema_json),
                           ("output", plugin.output_schema_json)):
            try:
                schema = json.loads(text) if text else {}
                if not isinstance(schema, dict):
                    raise ValueError("not a JSON object")
                jsonschema.Draft202012Validator.check_schema(schema)
            except (ValueError, jsonschema.SchemaError) as exc:
                message = exc.message if isinstance(exc, jsonschema.SchemaError) else str(exc)
                raise RemoteUnavailable(
                    f"{endpoint.target.url} sent an invalid {what} schema for plugin "
                    f"'{plugin.name}': {message}") from None
            schemas.append(schema)
        found[plugin.name] = RemoteDescriptor(plugin.name, plugin.version, plugin.description,
                                              plugin.idempotent, schemas[0], schemas[1])
    return found


def check_health(endpoint: Endpoint, name: str, timeout: float) -> str:
    """The standard health status of plugin ``name`` on the server (of the whole server when
    it reports none per plugin): SERVING, NOT_SERVING, ..., NO_HEALTH_SERVICE or UNREACHABLE."""
    with endpoint.sync_channel() as channel:
        check = channel.unary_unary(
            HEALTH_CHECK, request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        for service in (name, ""):
            try:
                reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() is Code.NOT_FOUND and service:
                    continue
                if exc.code() is Code.UNIMPLEMENTED:
                    return "NO_HEALTH_SERVICE"  # reachable, but breaks the protocol
                return "UNREACHABLE"
            status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            return status
    return "UNKNOWN"


def _unreachable(endpoint: Endpoint, exc: grpc.RpcError, timeout: float
                 ) -> tuple[str, str]:
    """Why a server could not be asked for its plugins, and what to do about it."""
    code, details = exc.code(), exc.details() or ""
    target = endpoint.target
    tls_table = f'[tls."{target.members[0].address}"] in flowhost.toml'
    start = (f"start its server (flowhost-plugin serve ... --listen {target.address}) or fix "
             "the URL")
    if target.balanced:  # none of them answered, or none was healthy
        start = ("start at least one of its servers (flowhost-plugin serve ... --listen "
                 "HOST:PORT), check that their health says SERVING, or fix the targets")
    if code is Code.UNIMPLEMENTED:
        return (f"{target.url} answers, but does not serve flowhost.v1.PluginService",
                "point the URL at a flowhost plugin server")
    if _tls_failure(details):
        return (f"TLS with {target.url} failed: {details}",
                f"check ca, cert and key in {tls_table}")
    if code is Code.DEADLINE_EXCEEDED:
        return f"no answer from {target.url} within {timeout:g}s", start
    if code is Code.RESOURCE_EXHAUSTED and "larger than max" in details:
        return (f"the plugin list of {target.url} is larger than this host's message limit: "
                f"{details}", "raise max_message_bytes in the [grpc] table of flowhost.toml")
    message = f"cannot reach {target.url}: {code.name}: {details}"
    if "socket closed" in details.lower():  # connected, then dropped: often a TLS mismatch
        if target.tls:
            return message, (f"{start}; if it is running, it may want a client certificate: "
                             f"cert and key in {tls_table}")
        return message, f"{start}; if the server uses TLS, use grpcs://"
    return message, start


# How gRPC reports that no connection could be made or kept (not a server's own UNAVAILABLE).
_CONNECTION_FAILURE = re.compile(
    r"failed to connect|connection refused|connect failed|socket closed|connection reset|"
    r"broken pipe|dns resolution failed|name resolution|no route to host|endpoint closing",
    re.IGNORECASE)


def _no_answer(endpoint: Endpoint, exc: grpc.RpcError) -> bool:
    """Whether a failed call had no answer from a server (none running, none reachable, or
    too slow), rather than a wrong one."""
    code, details = exc.code(), exc.details() or ""
    if endpoint.target.tls and "socket closed" in details.lower():
        # A TLS server that accepts the connection and closes it at once is refusing the
        # handshake (a client certificate it wants, one it does not trust): an answer.
        return False
    return code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED) and not _tls_failure(details)


def _no_such_method(exc: aio.AioRpcError) -> bool:
    """Whether a failed call says the server does not have the method, rather than that a
    plugin failed with UNIMPLEMENTED (which it says with flowhost's trailers)."""
    if exc.code() is not Code.UNIMPLEMENTED:
        return False
    return not any(key in protocol.PLUGIN_ERROR_KEYS for key, _ in exc.trailing_metadata() or ())


def _tls_failure(details: str) -> bool:
    lowered = details.lower()
    return any(word in lowered for word in ("handshake", "ssl", "certificate", "tls"))


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
            raise self._error(exc) from None
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
            raise self._error(exc) from None
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
            if updates == 0 and _no_such_method(exc):
                return None
            raise self._error(exc) from None
        finally:
            if not call.done():  # the host gave up (timeout, Ctrl-C): so does the call
                call.cancel()
        if result is None:
            raise InvalidOutputs(f"remote plugin {self.label}: InvokeStream ended without "
                                 "a result")
        return result

    def _error(self, exc: aio.AioRpcError) -> PluginError:
        metadata = exc.trailing_metadata() or ()
        error = protocol.error_from_status(exc.code(), exc.details(), metadata)
        if any(key in protocol.PLUGIN_ERROR_KEYS for key, _ in metadata):
            return error  # the plugin's own error, as it would be in-process
        # The call itself failed (connection, deadline, size limit...), or a server said
        # only a status: say where.
        details = exc.details() or ""
        error.message = f"remote plugin {self.label}: {exc.code().name}: {details or 'no details'}"
        error.args = (error.message,)
        if error.hint is None and exc.code() is Code.UNAVAILABLE:
            address = self.endpoint.target.address
            if _tls_failure(details):
                error.hint = f"Check the TLS settings for {address} in flowhost.toml"
            elif self.endpoint.target.balanced:
                error.hint = (f"Start at least one healthy server of {self.endpoint.target.url} "
                              "(flowhost-plugin serve ... --listen HOST:PORT)")
            elif _CONNECTION_FAILURE.search(details):
                error.hint = (f"Start the plugin server on {address} "
                              f"(flowhost-plugin serve ... --listen {address})")
        return error

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
