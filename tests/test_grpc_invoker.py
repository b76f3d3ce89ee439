"""The host's gRPC invoker against plugin servers in this process (fast; the CLI and real
server processes are covered in tests/integration)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from flowhost_test_plugins.basic import Echo, Noop, SyncEcho
from flowhost_test_plugins.failing import BadOutput, Crash, Fail
from grpc import aio
from pydantic import BaseModel

from flowhost.catalog import Catalog, PluginLoadError
from flowhost.config import HostConfig, parse_config
from flowhost.invokers import InvalidOutputs
from flowhost.invokers.grpc.channels import CHANNELS
from flowhost.invokers.grpc.invoker import GrpcInvoker
from flowhost.problems import SpecError
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost_sdk import (
    InvocationContext,
    NeedsIntervention,
    PermanentError,
    Plugin,
    PluginServer,
    TransientError,
    protocol,
)
from flowhost_sdk._proto import plugin_pb2 as pb


class Timing(Plugin):
    name = "timing"
    version = "0.3.0"
    idempotent = True

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        remaining: float | None
        attempt: int
        step_id: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(remaining=ctx.time_remaining(), attempt=ctx.attempt,
                            step_id=ctx.step_id)


@pytest.fixture
async def server() -> AsyncIterator[PluginServer]:
    async with PluginServer([Noop, Echo, SyncEcho, Fail, Crash, BadOutput, Timing],
                            "127.0.0.1:0") as running:
        yield running


def ctx(deadline_in: float | None = 10.0, attempt: int = 1) -> InvocationContext:
    loop = asyncio.get_running_loop()
    deadline = None if deadline_in is None else loop.time() + deadline_in
    return InvocationContext(run_id="run", step_id="step", attempt=attempt, deadline=deadline)


async def load(name: str, config: HostConfig | None = None,
               catalog: Catalog | None = None) -> GrpcInvoker:
    """Catalog.get asks the server synchronously: off the loop the server runs on."""
    catalog = catalog or Catalog(config or HostConfig())
    invoker = await asyncio.to_thread(catalog.get, name)
    assert isinstance(invoker, GrpcInvoker)
    return invoker


async def test_a_url_gives_an_invoker_described_by_list_plugins(server: PluginServer) -> None:
    url = f"grpc://{server.address}/echo"
    invoker = await load(url)
    assert (invoker.name, invoker.served_as, invoker.url) == (url, "echo", url)
    assert (invoker.version, invoker.transport, invoker.idempotent) == ("1.2.0", "grpc", False)
    assert invoker.input_schema == Echo.input_schema()
    assert invoker.output_schema == Echo.output_schema()
    assert invoker.description == Echo.description
    outputs = await invoker.invoke({"text": "hé", "tags": ["a"]}, ctx())
    assert outputs == {"text": "hé", "length": 2, "data": {}, "tags": ["a"]}


async def test_sync_plugins_and_yaml_dates_work_remotely(server: PluginServer) -> None:
    import datetime

    echo = await load(f"grpc://{server.address}/echo")
    outputs = await echo.invoke({"text": "x", "data": {"day": datetime.date(2024, 5, 1)}}, ctx())
    assert outputs["data"] == {"day": "2024-05-01"}
    sync = await load(f"grpc://{server.address}/sync-echo")
    assert (await sync.invoke({"text": "t"}, ctx()))["text"] == "t"


async def test_the_step_deadline_is_the_call_deadline(server: PluginServer) -> None:
    invoker = await load(f"grpc://{server.address}/timing")
    outputs = await invoker.invoke({}, ctx(deadline_in=4.0, attempt=2))
    assert 3.0 < outputs["remaining"] <= 4.1  # the wire rounds the timeout up a little
    assert (outputs["attempt"], outputs["step_id"]) == (2, "step")
    # No step timeout: the configured default deadline, still a deadline.
    outputs = await invoker.invoke({}, ctx(deadline_in=None))
    assert 3500 < outputs["remaining"] <= 3700


async def test_one_channel_per_target_shared_by_every_plugin_there(server: PluginServer) -> None:
    catalog = Catalog(HostConfig())
    noop = await load(f"grpc://{server.address}/noop", catalog=catalog)
    echo = await load(f"grpc://{server.address}/echo", catalog=catalog)
    before = len(CHANNELS.channels())
    await asyncio.gather(*(noop.invoke({"value": i}, ctx()) for i in range(20)),
                         *(echo.invoke({"text": str(i)}, ctx()) for i in range(20)))
    again = await load(f"grpc://{server.address}/noop")  # another catalog (another run)
    assert (await again.invoke({"value": 1}, ctx())) == {"value": 2}
    assert noop.endpoint == echo.endpoint == again.endpoint
    assert len(CHANNELS.channels()) - before <= 1


@pytest.mark.parametrize(("kind", "cls"), [("transient", TransientError),
                                           ("permanent", PermanentError),
                                           ("intervention", NeedsIntervention)])
async def test_remote_errors_are_the_sdk_error_classes(server: PluginServer, kind: str,
                                                       cls: type[Exception]) -> None:
    invoker = await load(f"grpc://{server.address}/fail")
    with pytest.raises(cls) as caught:
        await invoker.invoke({"kind": kind, "message": "boom", "hint": "Fix it"}, ctx())
    assert str(caught.value) == "boom"
    assert getattr(caught.value, "hint", None) == "Fix it"


async def test_a_crash_keeps_its_type_and_message(server: PluginServer) -> None:
    invoker = await load(f"grpc://{server.address}/crash")
    with pytest.raises(PermanentError) as caught:
        await invoker.invoke({}, ctx())
    assert type(caught.value).__name__ == "ZeroDivisionError"
    assert str(caught.value) == "division by zero in the plugin"


async def test_inputs_the_remote_rejects_are_permanent_naming_the_field(
        server: PluginServer) -> None:
    invoker = await load(f"grpc://{server.address}/echo")
    with pytest.raises(PermanentError, match="inputs rejected by echo: field 'text'") as caught:
        await invoker.invoke({"text": ["not", "text"]}, ctx())
    assert type(caught.value).__name__ == "InvalidInputs"


async def test_a_stopped_server_is_a_transient_error_with_a_hint(server: PluginServer) -> None:
    invoker = await load(f"grpc://{server.address}/noop")
    assert await invoker.invoke({"value": 1}, ctx()) == {"value": 2}
    await server.stop(None)
    with pytest.raises(TransientError) as caught:
        await invoker.invoke({"value": 1}, ctx(deadline_in=3))
    assert f"remote plugin {invoker.url}: UNAVAILABLE" in str(caught.value)
    assert caught.value.hint is not None and server.address in caught.value.hint


# -- a server that lies about its outputs -------------------------------------------------
LYING_SCHEMA = {"type": "object", "required": ["count", "path"],
                "properties": {"count": {"type": "integer"}, "path": {"type": "string"},
                               "items": {"type": "array", "items": {"type": "string"}}}}


@pytest.fixture
async def liar() -> AsyncIterator[tuple[str, Callable[[Any], None]]]:
    """A raw server whose plugin 'liar' declares LYING_SCHEMA and returns what it is told."""
    reply: dict[str, Any] = {"outputs": b"{}"}

    async def list_plugins(request: Any, context: Any) -> pb.ListPluginsResponse:
        return pb.ListPluginsResponse(plugins=[pb.PluginDescriptor(
            name="liar", version="1", input_schema_json="{}",
            output_schema_json=json.dumps(LYING_SCHEMA))])

    async def invoke(request: Any, context: Any) -> pb.InvokeResponse:
        if isinstance(reply["outputs"], tuple):  # (code, details, trailing metadata)
            code, details, trailers = reply["outputs"]
            context.set_trailing_metadata(trailers)
            await context.abort(code, details)
        return pb.InvokeResponse(outputs_json=reply["outputs"])

    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(protocol.SERVICE, {
        "ListPlugins": grpc.unary_unary_rpc_method_handler(
            list_plugins, pb.ListPluginsRequest.FromString,
            pb.ListPluginsResponse.SerializeToString),
        "Invoke": grpc.unary_unary_rpc_method_handler(
            invoke, pb.InvokeRequest.FromString, pb.InvokeResponse.SerializeToString),
    }),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    def tell(outputs: bytes | tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]
             ) -> None:
        reply["outputs"] = outputs

    try:
        yield f"grpc://127.0.0.1:{port}/liar", tell
    finally:
        await server.stop(None)


@pytest.mark.parametrize(("outputs", "message"), [
    (b'{"count": "many", "path": "/x"}', "field 'count': 'many' is not of type 'integer'"),
    (b'{"path": "/x"}', "field 'count': missing"),
    (b'{"count": 1, "path": "/x", "items": ["a", 2]}', "field 'items.1': 2 is not of type"),
    (b"[1]", "are not a JSON object but list"),
    (b"{nope", "are not valid JSON"),
    (b'{"count": NaN, "path": "/x"}', "NaN is not a JSON value"),
])
async def test_outputs_that_do_not_match_the_declared_schema_fail_naming_the_field(
        liar: tuple[str, Callable[[Any], None]], outputs: bytes, message: str) -> None:
    url, tell = liar
    invoker = await load(url)
    tell(outputs)
    with pytest.raises(InvalidOutputs) as caught:
        await invoker.invoke({}, ctx())
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"outputs of {url}")
    tell(b'{"count": 1, "path": "/x"}')
    assert await invoker.invoke({}, ctx()) == {"count": 1, "path": "/x"}


async def test_a_status_a_server_sends_itself_gets_no_start_the_server_hint(
        liar: tuple[str, Callable[[Any], None]]) -> None:
    url, tell = liar
    invoker = await load(url)
    tell((grpc.StatusCode.UNAVAILABLE, "db locked", ()))
    with pytest.raises(TransientError) as caught:
        await invoker.invoke({}, ctx())
    assert str(caught.value) == f"remote plugin {url}: UNAVAILABLE: db locked"
    assert caught.value.hint is None  # the server answered: starting it is not the fix


async def test_a_typed_error_without_a_kind_is_the_plugins_own(
        liar: tuple[str, Callable[[Any], None]]) -> None:
    url, tell = liar
    invoker = await load(url)
    tell((grpc.StatusCode.UNAVAILABLE, "ConnectionRefusedError: [Errno 111] refused",
          (("flowhost-error-type", "ConnectionRefusedError"),)))
    with pytest.raises(TransientError) as caught:
        await invoker.invoke({}, ctx())
    assert type(caught.value).__name__ == "ConnectionRefusedError"
    assert str(caught.value) == "[Errno 111] refused"


# -- finding remote plugins -----------------------------------------------------------------
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says anything."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


async def test_an_unreachable_server_names_the_target(unused_tcp_port: int) -> None:
    url = f"grpc://127.0.0.1:{unused_tcp_port}/noop"
    with pytest.raises(PluginLoadError) as caught:
        await load(url)
    assert f"cannot reach grpc://127.0.0.1:{unused_tcp_port}" in caught.value.reason
    assert caught.value.suggestion and "flowhost-plugin serve" in caught.value.suggestion


async def test_a_silent_server_times_out_after_connect_timeout(silent_port: int,
                                                               tmp_path: Path) -> None:
    config = parse_config("[grpc]\nconnect_timeout = 0.5\n", tmp_path / "flowhost.toml")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PluginLoadError) as caught:
        await load(f"grpc://127.0.0.1:{silent_port}/noop", config)
    assert loop.time() - started < 3
    assert f"127.0.0.1:{silent_port}" in caught.value.reason
    assert "timed out" in caught.value.reason or "no answer" in caught.value.reason


async def test_a_plugin_the_server_does_not_serve(server: PluginServer) -> None:
    with pytest.raises(PluginLoadError) as caught:
        await load(f"grpc://{server.address}/ecoh")
    assert "does not serve 'ecoh'; it serves: " in caught.value.reason
    assert caught.value.suggestion == "did you mean 'echo'?"


async def test_a_url_must_name_the_plugin(server: PluginServer) -> None:
    with pytest.raises(PluginLoadError, match="end it with the plugin's name"):
        await load(f"grpc://{server.address}")


async def test_a_name_mapped_in_flowhost_toml_wins_over_a_local_plugin(
        server: PluginServer, tmp_path: Path) -> None:
    config = parse_config(f'[remote]\necho = "grpc://{server.address}"\n'
                          f'shout = "grpc://{server.address}/echo"\n', tmp_path / "f.toml")
    catalog = Catalog(config)
    assert catalog.entries()["echo"].transport == "grpc"
    echo = await load("echo", catalog=catalog)
    assert (echo.name, echo.served_as) == ("echo", "echo")
    shout = await load("shout", catalog=catalog)
    assert (shout.name, shout.served_as, shout.label) == (
        "shout", "echo", f"shout (at grpc://{server.address}/echo)")
    assert (await shout.invoke({"text": "hi"}, ctx()))["length"] == 2


async def test_static_checks_type_check_references_to_remote_outputs(
        server: PluginServer) -> None:
    remote = f"grpc://{server.address}"
    text = f"""
workflow_id: remote-refs
steps:
  - id: first
    plugin: {remote}/noop
  - id: second
    plugin: {remote}/echo
    inputs: {{text: $first.value, tags: $first.valeu}}
  - id: third
    plugin: sync-echo
    inputs: {{text: $second.length}}
"""
    spec = parse_spec(text, "wf.yaml")
    with pytest.raises(SpecError) as caught:
        await asyncio.to_thread(check, spec, Catalog(HostConfig()), {})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "$first.value is integer, but the input expects string" in problems
    assert "have no field 'valeu'" in problems and "did you mean 'value'?" in problems
    assert "$second.length is integer, but the input expects string" in problems


async def test_a_plugin_list_past_the_hosts_message_limit_says_to_raise_it(
        server: PluginServer, tmp_path: Path) -> None:
    config = parse_config("[grpc]\nmax_message_bytes = 1024\n", tmp_path / "flowhost.toml")
    with pytest.raises(PluginLoadError) as caught:
        await load(f"grpc://{server.address}/noop", config)
    assert "larger than this host's message limit" in caught.value.reason
    assert caught.value.suggestion is not None and "max_message_bytes" in caught.value.suggestion


async def test_a_server_without_the_health_service_is_reported(
        server: PluginServer, liar: tuple[str, Callable[[Any], None]]) -> None:
    from flowhost.invokers.grpc.discovery import check_health

    served = await load(f"grpc://{server.address}/noop")
    assert await asyncio.to_thread(check_health, served.endpoint, "noop", 3) == "SERVING"
    bare = await load(liar[0])  # a raw server that serves PluginService only
    assert await asyncio.to_thread(check_health, bare.endpoint, "liar", 3) == (
        "NO_HEALTH_SERVICE")
