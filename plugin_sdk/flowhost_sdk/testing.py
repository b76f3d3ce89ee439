"""A conformance check for plugin authors: one call in your own test suite.

    from flowhost_sdk.testing import ErrorCase, assert_conforms

    def test_my_plugin_conforms(tmp_path):
        assert_conforms(
            Scaffolder,
            {"app_name": "shop", "directory": str(tmp_path)},
            error_cases=[ErrorCase({"app_name": "shop", "template": "nope"}, PermanentError)],
        )

It proves that the plugin class is complete, that its schemas export as JSON Schema, that
each sample invocation round-trips in-process and over a real gRPC server on loopback
(started on a free port and stopped again) with equal outputs, that the server describes
the plugin truthfully and reports its health, and that each error case fails the same way
both times: same error class (so the same recovery), message and hint. Bad requests
(garbage JSON, an unknown plugin) are checked to get their status codes too.

Inputs may be given as a function returning them, for a plugin whose run has side effects
that a second run would trip over. The kit calls it before each invocation — once for the
in-process run, once for the run over gRPC — and makes nothing itself, so what must be new
each time the function makes::

    assert_conforms(Scaffolder, lambda: {"app_name": "shop",
                                         "directory": tempfile.mkdtemp(dir=tmp_path)},
                    ignore_fields=["project_path"])  # a different folder each time
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb
from flowhost_sdk.errors import PluginError
from flowhost_sdk.plugin import InvocationContext, Plugin, check_plugin_class
from flowhost_sdk.server import PluginServer
from flowhost_sdk.validation import as_outputs

Inputs = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
__all__ = ["ConformanceError", "ConformanceReport", "ErrorCase", "assert_conforms",
           "check_conformance"]


class ConformanceError(AssertionError):
    """The plugin does not conform; the message lists every problem found."""

    def __init__(self, plugin: str, problems: list[str]) -> None:
        self.plugin = plugin
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"plugin {plugin} does not conform ({len(problems)} "
                         f"problem{'s' if len(problems) != 1 else ''}):\n{lines}")


@dataclass(frozen=True)
class ErrorCase:
    """Inputs on which the plugin must fail with ``raises`` (a subclass counts), in-process
    and remotely alike; ``hint``, when given, must be the error's hint."""

    inputs: Inputs
    raises: type[BaseException]
    hint: str | None = None


@dataclass
class ConformanceReport:
    """What the check saw: outputs in-process and over gRPC, per sample, in order."""

    plugin: str
    local_outputs: list[dict[str, Any]] = field(default_factory=list)
    remote_outputs: list[dict[str, Any]] = field(default_factory=list)
    address: str = ""


@dataclass(frozen=True)
class _Failure:
    kind: str
    type_name: str
    message: str
    hint: str | None


def assert_conforms(plugin: type[Plugin] | Plugin,
                    sample_inputs: Inputs | Sequence[Inputs],
                    *, error_cases: Iterable[ErrorCase | tuple[Inputs, type[BaseException]]] = (),
                    ignore_fields: Iterable[str] = (),
                    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                    timeout: float = 60.0) -> ConformanceReport:
    """Raise ``ConformanceError`` listing every way ``plugin`` breaks the contract.

    ``ignore_fields``: top-level output fields allowed to differ between two runs (times,
    absolute paths of fresh folders); ``normalize``: a function applied to both outputs
    before they are compared, for anything finer. Works inside a running event loop too.
    """
    check = check_conformance(plugin, sample_inputs, error_cases=error_cases,
                              ignore_fields=ignore_fields, normalize=normalize,
                              timeout=timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:  # outside the except: a failure must not show "no running event loop"
        return asyncio.run(check)
    box: dict[str, Any] = {}

    def run() -> None:  # an async test called us: the check gets a loop of its own
        try:
            box["report"] = asyncio.run(check)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name="flowhost-conformance")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    report: ConformanceReport = box["report"]
    return report


async def check_conformance(plugin: type[Plugin] | Plugin,
                            sample_inputs: Inputs | Sequence[Inputs],
                            *, error_cases: Iterable[ErrorCase | tuple[Inputs,
                                                                       type[BaseException]]] = (),
                            ignore_fields: Iterable[str] = (),
                            normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                            timeout: float = 60.0) -> ConformanceReport:
    """``assert_conforms`` for async tests: ``await check_conformance(...)``."""
    cls = plugin if isinstance(plugin, type) else type(plugin)
    problems = check_plugin_class(cls)
    if problems:
        raise ConformanceError(getattr(cls, "name", cls.__qualname__), problems)
    instance = plugin() if isinstance(plugin, type) else plugin
    samples = _as_list(sample_inputs)
    cases = [case if isinstance(case, ErrorCase) else ErrorCase(*case) for case in error_cases]
    if not samples and not cases:
        raise ConformanceError(cls.name, ["give at least one sample of inputs or error case"])
    checker = _Checker(cls, instance, set(ignore_fields), normalize, timeout)
    checker.schemas()
    report = ConformanceReport(cls.name)
    local_failures = []
    for sample in samples:
        report.local_outputs.append(await checker.local(sample) or {})
    for case in cases:
        local_failures.append(await checker.local_failure(case))
    async with PluginServer([instance], "127.0.0.1:0") as server:
        report.address = server.address
        async with aio.insecure_channel(server.address) as channel:
            remote = _Remote(channel, cls.name, timeout)
            await checker.served(remote)
            for index, sample in enumerate(samples):
                outputs = await checker.remote(remote, sample)
                report.remote_outputs.append(outputs or {})
                if outputs is not None and index < len(report.local_outputs):
                    checker.compare(index, report.local_outputs[index], outputs)
            for case, local in zip(cases, local_failures, strict=True):
                await checker.remote_failure(remote, case, local)
            await checker.bad_requests(remote)
    if checker.problems:
        raise ConformanceError(cls.name, checker.problems)
    return report


def _as_list(sample_inputs: Inputs | Sequence[Inputs]) -> list[Inputs]:
    if isinstance(sample_inputs, Mapping) or callable(sample_inputs):
        return [sample_inputs]
    return list(sample_inputs)


def _resolve(inputs: Inputs) -> dict[str, Any]:
    return dict(inputs() if callable(inputs) else inputs)


class _Remote:
    def __init__(self, channel: aio.Channel, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.list = channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        self.invoke = channel.unary_unary(
            protocol.INVOKE, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString)
        self.health = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    async def call(self, inputs_json: bytes, plugin: str | None = None) -> pb.InvokeResponse:
        request = pb.InvokeRequest(plugin=plugin or self.name, inputs_json=inputs_json,
                                   run_id="conformance", step_id="conformance", attempt=1)
        response: pb.InvokeResponse = await self.invoke(request, timeout=self.timeout)
        return response


class _Checker:
    def __init__(self, cls: type[Plugin], plugin: Plugin, ignore: set[str],
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None,
                 timeout: float) -> None:
        self.cls = cls
        self.plugin = plugin
        self.ignore = ignore
        self.normalize = normalize
        self.timeout = timeout
        self.problems: list[str] = []

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    # -- in-process ----------------------------------------------------------------------
    def schemas(self) -> None:
        for what, export in (("Inputs", self.cls.input_schema),
                             ("Outputs", self.cls.output_schema)):
            try:
                schema = export()
                text = json.dumps(schema)
            except Exception as exc:
                self.fail(f"the JSON Schema of {what} cannot be exported: "
                          f"{type(exc).__name__}: {exc}")
                continue
            if json.loads(text) != schema:
                self.fail(f"the JSON Schema of {what} does not survive a JSON round trip")
            if schema.get("type") != "object":
                self.fail(f"the JSON Schema of {what} must describe an object, not "
                          f"{schema.get('type')!r}")

    async def _run_local(self, inputs: dict[str, Any]) -> Any:
        model = self.cls.Inputs.model_validate(inputs)
        ctx = InvocationContext(run_id="conformance", step_id="conformance")
        if inspect.iscoroutinefunction(self.plugin.invoke):
            result = await self.plugin.invoke(model, ctx)
        else:
            result = await asyncio.to_thread(self.plugin.invoke, model, ctx)
            if inspect.isawaitable(result):
                result = await result
        outputs = as_outputs(self.cls.Outputs, result)
        dumped: dict[str, Any] = json.loads(outputs.model_dump_json())
        return dumped

    async def local(self, sample: Inputs) -> dict[str, Any] | None:
        inputs = _resolve(sample)
        try:
            outputs: dict[str, Any] = await self._run_local(inputs)
        except ValidationError as exc:
            self.fail(f"in-process with {inputs}: inputs or outputs rejected by the models: "
                      f"{exc}")
            return None
        except Exception as exc:
            self.fail(f"in-process with {inputs}: raised {type(exc).__name__}: {exc}")
            return None
        return outputs

    async def local_failure(self, case: ErrorCase) -> _Failure | None:
        inputs = _resolve(case.inputs)
        try:
            self.cls.Inputs.model_validate(inputs)
        except ValidationError as exc:
            self.fail(f"error case {inputs}: the Inputs model rejects these inputs, so the "
                      f"plugin is never called (give inputs it accepts): {exc}")
            return None
        try:
            await self._run_local(inputs)
        except Exception as exc:
            if not isinstance(exc, case.raises):
                self.fail(f"in-process with {inputs}: expected {case.raises.__name__}, got "
                          f"{type(exc).__name__}: {exc}")
            hint = exc.hint if isinstance(exc, PluginError) else None
            if case.hint is not None and hint != case.hint:
                self.fail(f"in-process with {inputs}: expected the hint {case.hint!r}, got "
                          f"{hint!r}")
            kind = exc.kind if isinstance(exc, PluginError) else "permanent"
            return _Failure(kind, type(exc).__name__, str(exc), hint)
        self.fail(f"in-process with {inputs}: expected {case.raises.__name__}, but it "
                  "succeeded")
        return None

    # -- over gRPC -----------------------------------------------------------------------
    async def served(self, remote: _Remote) -> None:
        listing = await remote.list(pb.ListPluginsRequest(), timeout=self.timeout)
        found = {d.name: d for d in listing.plugins}
        descriptor = found.get(self.cls.name)
        if descriptor is None:
            self.fail(f"ListPlugins does not list '{self.cls.name}' (it lists {list(found)})")
            return
        expected = (self.cls.version, bool(self.cls.idempotent), self.cls.input_schema(),
                    self.cls.output_schema())
        got = (descriptor.version, descriptor.idempotent,
               json.loads(descriptor.input_schema_json or "{}"),
               json.loads(descriptor.output_schema_json or "{}"))
        if got != expected:
            self.fail("ListPlugins describes the plugin differently from its class "
                      "(version, idempotent or schemas)")
        reply = await remote.health(health_pb2.HealthCheckRequest(service=self.cls.name),
                                    timeout=self.timeout)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            self.fail(f"the health service does not report '{self.cls.name}' as SERVING")

    async def remote(self, remote: _Remote, sample: Inputs) -> dict[str, Any] | None:
        inputs = _resolve(sample)
        try:
            response = await remote.call(json.dumps(inputs).encode("utf-8"))
        except aio.AioRpcError as exc:
            self.fail(f"over gRPC with {inputs}: {exc.code().name}: {exc.details()}")
            return None
        outputs: dict[str, Any] = json.loads(response.outputs_json)
        return outputs

    def compare(self, index: int, local: dict[str, Any], remote: dict[str, Any]) -> None:
        pair = [{k: v for k, v in outputs.items() if k not in self.ignore}
                for outputs in (local, remote)]
        if self.normalize is not None:
            pair = [self.normalize(outputs) for outputs in pair]
        if pair[0] != pair[1]:
            fields = sorted(k for k in {*pair[0], *pair[1]} if pair[0].get(k) != pair[1].get(k))
            self.fail(f"sample {index + 1}: outputs differ in-process and over gRPC in "
                      f"{', '.join(fields) or 'their shape'}: {pair[0]} != {pair[1]}")

    async def remote_failure(self, remote: _Remote, case: ErrorCase,
                             local: _Failure | None) -> None:
        inputs = _resolve(case.inputs)
        try:
            await remote.call(json.dumps(inputs).encode("utf-8"))
        except aio.AioRpcError as exc:
            error = protocol.error_from_status(exc.code(), exc.details(),
                                               exc.trailing_metadata())
            got = _Failure(error.kind, type(error).__name__, str(error), error.hint)
            if local is not None and got != local:
                self.fail(f"over gRPC with {inputs}: the error differs from in-process: "
                          f"{got} != {local}")
            return
        self.fail(f"over gRPC with {inputs}: expected {case.raises.__name__}, but it "
                  "succeeded")

    async def bad_requests(self, remote: _Remote) -> None:
        expectations = [
            (b"{not json", None, grpc.StatusCode.INVALID_ARGUMENT, "garbage inputs_json"),
            (b"[]", None, grpc.StatusCode.INVALID_ARGUMENT, "inputs_json that is no object"),
            (b"{}", f"{self.cls.name}-no-such-plugin", grpc.StatusCode.NOT_FOUND,
             "an unknown plugin name"),
        ]
        for payload, name, code, what in expectations:
            try:
                await remote.call(payload, name)
            except aio.AioRpcError as exc:
                if exc.code() is not code:
                    self.fail(f"{what}: expected {code.name}, got {exc.code().name}")
                continue
            self.fail(f"{what}: expected {code.name}, but the call succeeded")
