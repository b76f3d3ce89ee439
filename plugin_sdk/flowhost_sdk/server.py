"""Serve plugins over gRPC: ``flowhost_sdk.serve(...)``, ``PluginServer``.

    flowhost_sdk.serve([Scaffolder()], "127.0.0.1:50070")   # or: flowhost-plugin serve ...

The same ``Plugin`` classes that flowhost imports in-process, unchanged. The server speaks
``flowhost.v1.PluginService`` (``protos/flowhost/v1/plugin.proto``) and the standard
``grpc.health.v1.Health`` service on ``grpc.aio``; sync plugins run on daemon threads, off
the event loop. ``InvokeStream`` is ``Invoke`` with the plugin's ``ctx.progress()`` sent
while it runs (``flowhost_sdk.streaming``). Errors become status codes and trailing
metadata by ``flowhost_sdk.protocol``; whatever a plugin raises (KeyboardInterrupt and
SystemExit too) fails that call only. A sync call that finds every worker thread busy
(plugins that ignore their deadline keep theirs) is refused at once with
RESOURCE_EXHAUSTED; health says NOT_SERVING meanwhile. SIGTERM or SIGINT stops it
gracefully: health turns NOT_SERVING, new calls are refused, calls in flight get ``grace``
seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import os
import re
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from flowhost_sdk import masking, protocol
from flowhost_sdk._proto import plugin_pb2 as pb
from flowhost_sdk.decoding import parsed_in_handler
from flowhost_sdk.plugin import InvocationContext, Plugin, ProgressCallback, check_plugin_class
from flowhost_sdk.ports import busy_port_message
from flowhost_sdk.streaming import ProgressFeed, stream_call
from flowhost_sdk.threads import DaemonPool
from flowhost_sdk.validation import as_outputs, describe_validation_error

log = logging.getLogger("flowhost_sdk.server")
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_LISTEN = "127.0.0.1:50070"
DEFAULT_GRACE = 10.0
DEFAULT_MAX_WORKERS = 64
# How long a client connection lives before the server asks the client to open a new one
# (HTTP/2 GOAWAY; gRPC adds +-10 % jitter). Clients balance over the servers they are
# connected to and re-resolve a DNS name when a connection closes: without an age, a
# replica started later would get no calls from clients connected before it. Calls in
# flight on an aged connection finish on it (no age grace by default: a plugin call may
# rightly take hours, and cutting it would fail the step).
DEFAULT_MAX_CONNECTION_AGE = 300.0
PemSource = str | os.PathLike[str] | bytes  # a file path, or the PEM text itself


class ServeError(Exception):
    """The server cannot start: a bad plugin, address or certificate."""


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str,
                 metadata: protocol.Metadata = ((protocol.KIND_KEY, "permanent"),)) -> None:
        super().__init__(details)
        self.code, self.details, self.metadata = code, details, metadata


def _typed(error_type: str) -> protocol.Metadata:
    """Metadata of a permanent error named like the host's own for the same problem."""
    return (protocol.KIND_KEY, "permanent"), (protocol.TYPE_KEY, error_type)


@dataclass(frozen=True, slots=True)
class _Hosted:
    plugin: Plugin
    name: str
    inputs: type[BaseModel]
    outputs: type[BaseModel]
    is_async: bool
    descriptor: pb.PluginDescriptor


def _host(plugin: Plugin | type[Plugin]) -> _Hosted:
    if isinstance(plugin, type):
        problems = check_plugin_class(plugin)
        if problems:
            raise ServeError(f"{plugin.__module__}.{plugin.__qualname__}: {'; '.join(problems)}")
        plugin = plugin()
    cls = type(plugin)
    problems = check_plugin_class(cls)
    if problems:
        raise ServeError(f"{cls.__module__}.{cls.__qualname__}: {'; '.join(problems)}")
    try:
        descriptor = pb.PluginDescriptor(
            name=cls.name, version=cls.version, description=cls.description,
            input_schema_json=json.dumps(cls.input_schema(), separators=(",", ":")),
            output_schema_json=json.dumps(cls.output_schema(), separators=(",", ":")),
            idempotent=bool(cls.idempotent))
    except Exception as exc:
        raise ServeError(f"{cls.name}: its Inputs/Outputs schemas cannot be built: "
                         f"{type(exc).__name__}: {exc}") from exc
    return _Hosted(plugin, cls.name, cls.Inputs, cls.Outputs,
                   inspect.iscoroutinefunction(plugin.invoke), descriptor)


_Context = aio.ServicerContext[Any, Any]
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MORE_WORKERS_HINT = ("Serve with more threads: flowhost-plugin serve --max-workers N (or "
                     "max_workers= of flowhost_sdk.serve()); a long sync plugin frees its "
                     "thread sooner when it stops once ctx.cancelled is true")


class _Raised(Exception):
    """What a sync plugin raised in its thread, carried to the event loop as a plain Exception:
    asyncio re-raises a KeyboardInterrupt or SystemExit out of the loop, stopping the server,
    and grpc.aio never answers a call whose handler ended in another BaseException."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)  # not str(error): that may raise, in the thread
        self.error = error


def _run_sync(invoke: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return invoke(*args, **kwargs)
    except BaseException as exc:  # a call's failure, whatever it is, fails that call only
        raise _Raised(exc) from None


class _Workers:
    """The threads sync plugins run on, counted on the event loop's thread.

    A sync plugin that ignores its deadline keeps its thread after its client has given up
    (the call is "abandoned"). Queueing behind such threads would time out every later call
    while health still said SERVING; so a call that finds no thread free is refused at once
    with RESOURCE_EXHAUSTED (transient: the host retries it), and ``on_change`` tells the
    server when that starts and stops being the case.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self.busy = 0
        self.on_change: Callable[[], None] = lambda: None
        self._pool = DaemonPool(max_workers)
        self._abandoned: set[Future[Any]] = set()

    @property
    def full(self) -> bool:
        return self.busy >= self.max_workers

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.full:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._busy_message(),
                         ((protocol.KIND_KEY, "transient"), (protocol.TYPE_KEY, "ServerBusy"),
                          (protocol.HINT_KEY, protocol.encode_text(MORE_WORKERS_HINT))))
        loop = asyncio.get_running_loop()
        future = self._pool.submit(fn, *args, **kwargs)
        self.busy += 1
        future.add_done_callback(lambda done: self._finished_in_thread(loop, done))
        if self.full:
            log.warning("%s: new calls to sync plugins are refused until one frees up",
                        self._busy_message().partition(";")[0])
            self.on_change()
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():  # the thread cannot be stopped: it stays busy
                self._abandoned.add(future)
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)

    def _busy_message(self) -> str:
        abandoned = len(self._abandoned)
        which = (f", {abandoned} of them with calls their clients abandoned that still run"
                 if abandoned else "")
        return (f"all {self.max_workers} worker threads of this plugin server are busy{which}; "
                "try again later")

    def _finished_in_thread(self, loop: asyncio.AbstractEventLoop, future: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            loop.call_soon_threadsafe(self._finished, future)

    def _finished(self, future: Future[Any]) -> None:
        was_full = self.full
        self.busy -= 1
        self._abandoned.discard(future)
        if was_full:
            self.on_change()


def _cancelled_by_caller() -> bool:
    """Whether this handler's task was cancelled (gRPC does so when the client cancels or its
    deadline passes), rather than a plugin raising CancelledError of its own accord."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _PluginService:
    """The ``flowhost.v1.PluginService`` handlers."""

    def __init__(self, hosted: dict[str, _Hosted], max_message_bytes: int,
                 workers: _Workers) -> None:
        self._hosted = hosted
        self._max_message_bytes = max_message_bytes
        self._workers = workers
        self._listing = pb.ListPluginsResponse(plugins=[h.descriptor for h in hosted.values()])

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return parsed_in_handler({  # a malformed request: INVALID_ARGUMENT
            "ListPlugins": grpc.unary_unary_rpc_method_handler(
                self.list_plugins, request_deserializer=pb.ListPluginsRequest.FromString,
                response_serializer=pb.ListPluginsResponse.SerializeToString),
            "Invoke": grpc.unary_unary_rpc_method_handler(
                self.invoke, request_deserializer=pb.InvokeRequest.FromString,
                response_serializer=pb.InvokeResponse.SerializeToString),
            "InvokeStream": grpc.unary_stream_rpc_method_handler(
                self.invoke_stream, request_deserializer=pb.InvokeRequest.FromString,
                response_serializer=pb.InvokeUpdate.SerializeToString),
        })

    async def list_plugins(self, request: pb.ListPluginsRequest,
                           context: _Context) -> pb.ListPluginsResponse:
        return self._listing

    async def invoke(self, request: pb.InvokeRequest, context: _Context) -> pb.InvokeResponse:
        try:
            return await self._invoke(request, context)
        except _Abort as abort:
            context.set_trailing_metadata(abort.metadata)
            await context.abort(abort.code, protocol.sendable_text(abort.details))
            raise  # unreachable: abort() raises

    async def invoke_stream(self, request: pb.InvokeRequest, context: _Context) -> None:
        feed = ProgressFeed(asyncio.get_running_loop())
        try:
            response = await stream_call(self._invoke(request, context, feed.report), feed,
                                         context.write)
        except _Abort as abort:
            context.set_trailing_metadata(abort.metadata)
            await context.abort(abort.code, protocol.sendable_text(abort.details))
            raise  # unreachable: abort() raises
        await context.write(pb.InvokeUpdate(result=response))

    async def _invoke(self, request: pb.InvokeRequest, context: _Context,
                      on_progress: ProgressCallback | None = None) -> pb.InvokeResponse:
        hosted = self._hosted.get(request.plugin)
        if hosted is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND,
                         f"no plugin named '{request.plugin}' on this server; it serves: "
                         + ", ".join(sorted(self._hosted)))
        _reject_non_json_numbers(request.inputs_json)
        try:
            inputs = hosted.inputs.model_validate_json(request.inputs_json)
        except ValidationError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, _inputs_problem(exc, hosted.name),
                         _typed("InvalidInputs")) from None
        remaining = context.time_remaining()
        step_id = request.step_id or hosted.name
        secrets = masking.forms(request.masked)  # what the host masks: so does this log
        ctx = InvocationContext(
            run_id=request.run_id, step_id=step_id,
            attempt=max(request.attempt, 1),
            # 0: a host older than the field, which numbered attempts per plugin
            plugin_attempt=request.plugin_attempt if request.plugin_attempt > 0 else None,
            deadline=None if remaining is None else time.monotonic() + remaining,
            on_progress=on_progress,
            logger=masking.MaskingLogger(step_id, partial(masking.mask, secrets=secrets))
            if secrets else None)
        try:
            result = await self._call(hosted, inputs, ctx)
        except _Abort:
            raise
        except asyncio.CancelledError as exc:
            if _cancelled_by_caller():
                ctx.cancel()  # the caller gave up (deadline, cancellation): tell the plugin
                raise
            raise _failure(hosted, exc, secrets) from None
        except GeneratorExit:
            raise  # the loop is closing this coroutine: it must not answer any more
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: see _Raised
            raise _failure(hosted, exc.error if isinstance(exc, _Raised) else exc,
                           secrets) from None
        data = _dump_outputs(hosted, result)
        if len(data) > self._max_message_bytes:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the outputs of {hosted.name} are {len(data)} bytes, past this "
                         f"server's message limit of {self._max_message_bytes} bytes",
                         (*_typed("MessageTooLarge"),
                          (protocol.HINT_KEY, protocol.encode_text(protocol.RAISE_LIMIT_HINT))))
        return pb.InvokeResponse(outputs_json=data)

    async def _call(self, hosted: _Hosted, inputs: BaseModel, ctx: InvocationContext) -> Any:
        if hosted.is_async:
            return await hosted.plugin.invoke(inputs, ctx)  # type: ignore[misc]
        result = await self._workers.run(_run_sync, hosted.plugin.invoke, inputs, ctx)
        if inspect.isawaitable(result):
            result = await result
        return result


def _failure(hosted: _Hosted, exc: BaseException, secrets: list[str]) -> _Abort:
    code, details, metadata = protocol.status_for_error(exc)
    if code is grpc.StatusCode.INTERNAL:
        trace = "".join(traceback.format_exception(exc)).rstrip()
        log.error("plugin %s failed\n%s", hosted.name, masking.mask(trace, secrets))
    else:
        log.info("plugin %s raised %s: %s", hosted.name, type(exc).__name__,
                 masking.mask(details, secrets))
    return _Abort(code, details, metadata)


_HUGE_EXPONENT = re.compile(rb"[0-9][eE][+-]?[0-9]{3}")  # 1e309 and past: no double holds it


def _reject_non_json_numbers(data: bytes) -> None:
    """pydantic's parser takes NaN and Infinity, which are not JSON, and reads 1e999 as
    infinity: the wire format is JSON for every language, so they are refused (the byte
    search keeps the common case fast)."""
    if (b"NaN" not in data and b"Infinity" not in data
            and _HUGE_EXPONENT.search(data) is None):
        return
    try:
        json.loads(data, parse_constant=protocol.reject_constant,
                   parse_float=_finite_float)
    except ValueError as exc:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"inputs_json is not valid JSON: {exc}",
                     _typed("InvalidInputs")) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past the largest number JSON readers take (about 1.8e308)")
    return value


def _inputs_problem(exc: ValidationError, name: str) -> str:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return f"inputs_json is not valid JSON: {errors[0]['msg']}"
    if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
        return f"inputs_json must be a JSON object, not {errors[0]['input'].__class__.__name__}"
    return describe_validation_error(exc, f"inputs rejected by {name}")


def _dump_outputs(hosted: _Hosted, result: Any) -> bytes:
    try:
        result = as_outputs(hosted.outputs, result)
    except ValidationError as exc:
        raise _Abort(grpc.StatusCode.INTERNAL, describe_validation_error(
            exc, f"outputs of {hosted.name} do not match its Outputs"),
            _typed("InvalidOutputs")) from None
    try:
        data: bytes = result.model_dump_json().encode("utf-8")
    except (PydanticSerializationError, UnicodeEncodeError) as exc:
        raise _Abort(grpc.StatusCode.INTERNAL, _unsendable(hosted.name, result, exc),
                     _typed("InvalidOutputs")) from None
    return data


def _unsendable(name: str, outputs: BaseModel, exc: Exception) -> str:
    what = f"outputs of {name} cannot be sent as JSON"
    try:
        found = _lone_surrogate(outputs.model_dump(), ())
    except Exception:  # pydantic's own message is all there is to say
        found = None
    if found is None:
        return f"{what}: {exc}"
    path, text = found
    shown = text[:80].encode("utf-8", "backslashreplace").decode("utf-8")
    return (f"{what}: field '{'.'.join(path) or '(root)'}': '{shown}' is not valid Unicode "
            "text (a lone surrogate: os.listdir and os.environ give those for bytes that are "
            "not UTF-8; decode such names with os.fsencode(name).decode('utf-8', 'replace'))")


def _lone_surrogate(value: Any, path: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    """Where in ``value`` a text has no UTF-8 form, and that text; None when none is found."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, value
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = (*path, str(key))
            found = _lone_surrogate(key, where) or _lone_surrogate(item, where)
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, (*path, str(index)))
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The server's certificate and key, and the CA that client certificates must chain to
    (mutual TLS) when ``client_ca`` is given."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def load(cls, cert: PemSource, key: PemSource, client_ca: PemSource | None = None
             ) -> TLSFiles:
        return cls(_pem(cert, "--tls-cert"), _pem(key, "--tls-key"),
                   _pem(client_ca, "--tls-client-ca") if client_ca is not None else None)


_MAX_PEM_BYTES = 1024 * 1024  # a chain, a key, a bundle of CAs; /dev/zero is refused


def _pem(source: PemSource, what: str) -> bytes:
    if isinstance(source, bytes):
        data, name = source, "the given PEM"
    else:
        name = str(source) if len(str(source)) <= 200 else str(source)[:199] + "…"
        try:
            with open(source, "rb") as stream:
                data = stream.read(_MAX_PEM_BYTES + 1)
        except OSError as exc:
            raise ServeError(f"{what} {name}: {exc.strerror or exc}") from None
        if len(data) > _MAX_PEM_BYTES:
            raise ServeError(f"{what} {name}: larger than {_MAX_PEM_BYTES:,} bytes: not a "
                             "certificate or key")
    if b"-----BEGIN " not in data:
        raise ServeError(f"{what} {name}: not a PEM file (-----BEGIN ... -----)")
    return data


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); raises ServeError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ServeError(f"listen address {address!r} is not HOST:PORT (e.g. 127.0.0.1:50070, "
                         "or port 0 for any free port)")
    return host, int(port)


class PluginServer:
    """A gRPC server for some plugins: ``await start()``, then ``await stop()``.

    ``start`` returns the address actually bound (port 0 picks a free port).
    ``max_workers`` is how many calls to sync plugins run at once, each on its own thread,
    including calls their clients gave up on that the plugin does not stop; one more is
    answered RESOURCE_EXHAUSTED. Async plugins run on the event loop, unbounded by it.
    ``max_connection_age`` (seconds, None: unlimited) closes each client connection once
    that old, after the calls on it finish (or after ``max_connection_age_grace`` seconds,
    None: never cut), so clients spread over replicas started since they connected.
    """

    def __init__(self, plugins: Iterable[Plugin | type[Plugin]], address: str = DEFAULT_LISTEN,
                 *, tls: TLSFiles | None = None,
                 max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES,
                 max_workers: int = DEFAULT_MAX_WORKERS,
                 max_connection_age: float | None = DEFAULT_MAX_CONNECTION_AGE,
                 max_connection_age_grace: float | None = None) -> None:
        hosted: dict[str, _Hosted] = {}
        for plugin in plugins:
            entry = _host(plugin)
            if entry.name in hosted:
                raise ServeError(f"two plugins are named '{entry.name}'")
            hosted[entry.name] = entry
        if not hosted:
            raise ServeError("no plugins to serve")
        if max_message_bytes < 1024:
            raise ServeError(f"max_message_bytes must be at least 1024, got {max_message_bytes}")
        if max_workers < 1:
            raise ServeError(f"max_workers must be at least 1, got {max_workers}")
        for what, seconds in (("max_connection_age", max_connection_age),
                              ("max_connection_age_grace", max_connection_age_grace)):
            if seconds is not None and not 0 < seconds < 2**31 / 1000:
                raise ServeError(f"{what} must be a positive number of seconds below "
                                 f"{2**31 // 1000}, got {seconds}")
        self.max_connection_age = max_connection_age
        self.max_connection_age_grace = max_connection_age_grace
        self.host, self.port = split_address(address)
        self.names = list(hosted)
        self.tls = tls
        self.max_message_bytes = max_message_bytes
        self.max_workers = max_workers
        self._hosted = hosted
        self._workers = _Workers(max_workers)
        self._workers.on_change = self._capacity_changed
        # Only sync plugins wait for a worker thread; async ones stay SERVING.
        self._thread_bound = ["", *(h.name for h in hosted.values() if not h.is_async)]
        self._server: aio.Server | None = None
        self._health: Any = None
        self._health_stale = False
        self._publishing: asyncio.Future[None] | None = None
        self._stopping = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def ready_line(self) -> str:
        security = "" if self.tls is None else (
            " with mTLS" if self.tls.client_ca is not None else " with TLS")
        return f"flowhost-plugin: serving {', '.join(self.names)} on {self.address}{security}"

    async def start(self) -> str:
        busy = busy_port_message(self.address)
        if busy is not None:
            raise ServeError(busy)
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.so_reuseport", 0)]  # a busy port is an error, not shared
        if self.max_connection_age is not None:
            options.append(("grpc.max_connection_age_ms",
                            max(1, round(self.max_connection_age * 1000))))
        if self.max_connection_age_grace is not None:
            options.append(("grpc.max_connection_age_grace_ms",
                            max(1, round(self.max_connection_age_grace * 1000))))
        server = aio.server(options=options)
        service = _PluginService(self._hosted, self.max_message_bytes, self._workers)
        handlers = service.handlers()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(protocol.SERVICE, handlers),))
        server.add_registered_method_handlers(protocol.SERVICE, handlers)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        try:
            if self.tls is None:
                port = server.add_insecure_port(self.address)
            else:
                credentials = grpc.ssl_server_credentials(
                    [(self.tls.key, self.tls.cert)], root_certificates=self.tls.client_ca,
                    require_client_auth=self.tls.client_ca is not None)
                port = server.add_secure_port(self.address, credentials)
        except RuntimeError as exc:
            why = (" (or the TLS certificate and key are unusable: do they match?)"
                   if self.tls is not None else "")
            raise ServeError(f"cannot listen on {self.address}{why}: {exc}") from None
        if not port:
            raise ServeError(f"cannot listen on {self.address} (in use, or not an address of "
                             "this machine)")
        self.port = port
        await server.start()
        self._server = server
        for name in ["", *self.names]:
            await self._health.set(name, _SERVING)
        return self.address

    def _capacity_changed(self) -> None:
        self._health_stale = True
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.ensure_future(self._publish_capacity())

    async def _publish_capacity(self) -> None:
        """Health NOT_SERVING while no worker thread is free, SERVING again once one is.
        One publisher at a time, writing the latest state: with health watchers each set may
        yield, and a burst of changes must not end on a stale status."""
        while self._health_stale:
            self._health_stale = False
            status = _NOT_SERVING if self._workers.full else _SERVING
            for name in self._thread_bound:
                await self._health.set(name, status)  # ignored once shutting down

    async def stop(self, grace: float | None = DEFAULT_GRACE) -> None:
        """Refuse new calls, let calls in flight finish within ``grace`` seconds, stop."""
        server = self._server
        if server is None:
            return
        if not self._stopping:
            self._stopping = True
            await self._health.enter_graceful_shutdown()
        # Idempotent: a later call with a shorter grace (a second signal) cuts the wait.
        await server.stop(grace)
        self._server = None
        self._workers.shutdown()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> PluginServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(grace=0)


async def serve_async(plugins: Iterable[Plugin | type[Plugin]], address: str = DEFAULT_LISTEN,
                      *, tls_cert: PemSource | None = None, tls_key: PemSource | None = None,
                      tls_client_ca: PemSource | None = None,
                      max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES,
                      max_workers: int = DEFAULT_MAX_WORKERS, grace: float = DEFAULT_GRACE,
                      max_connection_age: float | None = DEFAULT_MAX_CONNECTION_AGE,
                      max_connection_age_grace: float | None = None,
                      ready: Callable[[PluginServer], Awaitable[None] | None] | None = None,
                      stop: asyncio.Event | None = None, handle_signals: bool = True) -> None:
    """Serve ``plugins`` until SIGTERM/SIGINT (or until ``stop`` is set), then stop gracefully.

    ``ready(server)`` is called once the port is bound (``server.address`` has the real
    port); by default the ready line is logged. A second signal stops without waiting.
    ``max_workers`` bounds the threads sync plugins run on, ``max_connection_age`` how long
    a client connection lives (see ``PluginServer``).
    """
    tls = None
    if tls_cert is not None or tls_key is not None:
        if tls_cert is None or tls_key is None:
            raise ServeError("TLS needs both a certificate and its key")
        tls = TLSFiles.load(tls_cert, tls_key, tls_client_ca)
    elif tls_client_ca is not None:
        raise ServeError("a client CA (mutual TLS) needs the server's own certificate and key")
    server = PluginServer(plugins, address, tls=tls, max_message_bytes=max_message_bytes,
                          max_workers=max_workers, max_connection_age=max_connection_age,
                          max_connection_age_grace=max_connection_age_grace)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()

    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
    try:
        await server.start()
        if ready is None:
            log.info("%s", server.ready_line())
        else:
            announced = ready(server)
            if announced is not None:
                await announced
        await stop.wait()
        log.info("flowhost-plugin: stopping (grace %gs)", grace)
        stopping = asyncio.ensure_future(server.stop(grace))
        while not stopping.done():
            await asyncio.wait([stopping], timeout=0.1)
            if signals > 1:  # asked twice: do not wait for calls in flight
                await server.stop(None)
        await stopping
    finally:
        await server.stop(None)
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(plugins: Iterable[Plugin | type[Plugin]], address: str = DEFAULT_LISTEN,
          **options: Any) -> None:
    """Serve ``plugins`` on ``address`` and block until SIGTERM/SIGINT (see ``serve_async``).

    From inside a running event loop, ``await serve_async(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(serve_async(plugins, address, **options))
        return
    raise RuntimeError("flowhost_sdk.serve() blocks; inside an event loop use "
                       "`await flowhost_sdk.serve_async(...)`")
