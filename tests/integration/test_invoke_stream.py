"""InvokeStream (CONTRACT §3): a remote plugin's ``ctx.progress()`` reaches the host while
the call runs, as the same StepProgress a local plugin's does; a server written from the
first .proto (no InvokeStream) still works, and costs one extra round trip per server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc
from plugin_servers import Served, StartServer, flowhost

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb


def stream_method(channel: grpc.Channel) -> Callable[..., Iterator[pb.InvokeUpdate]]:
    method: Callable[..., Iterator[pb.InvokeUpdate]] = channel.unary_stream(
        protocol.INVOKE_STREAM, request_serializer=pb.InvokeRequest.SerializeToString,
        response_deserializer=pb.InvokeUpdate.FromString)
    return method


def serve_streaming(plugin_server: StartServer, *classes: str) -> Served:
    return plugin_server(*(f"stream_plugins:{name}" for name in classes))


def test_progress_arrives_while_the_call_runs_then_the_result(plugin_server: StartServer,
                                                              tmp_path: Path) -> None:
    served = serve_streaming(plugin_server, "Gated")
    gate = tmp_path / "gate"
    request = pb.InvokeRequest(plugin="gated", inputs_json=json.dumps(
        {"gate": str(gate)}).encode(), run_id="r", step_id="s", attempt=1, plugin_attempt=1)
    with grpc.insecure_channel(served.address) as channel:
        updates = stream_method(channel)(request, timeout=60)
        first = next(updates)
        # The plugin waits for the gate: this update can only have come while it ran.
        assert first.WhichOneof("update") == "progress"
        assert (first.progress.fraction, first.progress.message) == (0.25,
                                                                     "waiting at the gate")
        gate.touch()
        rest = list(updates)
    assert [u.WhichOneof("update") for u in rest] == ["progress", "result"]
    assert (rest[0].progress.fraction, rest[0].progress.message) == (1.0, "through the gate")
    assert json.loads(rest[1].result.outputs_json) == {"passed": True}


def test_a_failing_stream_ends_with_the_status_invoke_would_give(plugin_server: StartServer
                                                                 ) -> None:
    served = serve_streaming(plugin_server, "Down", "Gated")
    with grpc.insecure_channel(served.address) as channel:
        call = stream_method(channel)
        with pytest.raises(grpc.RpcError) as down:
            list(call(pb.InvokeRequest(plugin="down", inputs_json=b"{}"), timeout=60))
        with pytest.raises(grpc.RpcError) as bad:
            list(call(pb.InvokeRequest(plugin="gated", inputs_json=b"{}"), timeout=60))
        with pytest.raises(grpc.RpcError) as unknown:
            list(call(pb.InvokeRequest(plugin="nope", inputs_json=b"{}"), timeout=60))
    assert down.value.code() is grpc.StatusCode.UNAVAILABLE
    trailers = dict(down.value.trailing_metadata() or ())
    assert trailers[protocol.KIND_KEY] == "transient"
    assert "down (attempt 1, plugin attempt 1)" in (down.value.details() or "")
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "gate" in (bad.value.details() or "")
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


def test_flowhost_run_shows_a_remote_plugins_progress(plugin_server: StartServer,
                                                      tmp_path: Path) -> None:
    served = serve_streaming(plugin_server, "Halfway")
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: streamed
steps:
  - id: half
    plugin: {served.url("halfway")}
""", encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "50%: halfway there" in done.stdout + done.stderr


class _OldService:
    """A plugin server made from the first plugin.proto: ListPlugins and Invoke, nothing
    else. It counts the methods clients asked for, also those it does not have."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._lock = threading.Lock()

    def list_plugins(self, request: pb.ListPluginsRequest, context: Any
                     ) -> pb.ListPluginsResponse:
        schema = {"type": "object", "properties": {"text": {"type": "string"}},
                  "required": ["text"]}
        return pb.ListPluginsResponse(plugins=[pb.PluginDescriptor(
            name="shout", version="1.0.0", input_schema_json=json.dumps(schema),
            output_schema_json=json.dumps(schema))])

    def invoke(self, request: pb.InvokeRequest, context: Any) -> pb.InvokeResponse:
        text = json.loads(request.inputs_json)["text"]
        return pb.InvokeResponse(outputs_json=json.dumps({"text": text.upper() + "!"}).encode())


class _Counter(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, service: _OldService) -> None:
        self._service = service

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        with self._service._lock:
            self._service.asked.append(details.method)
        return continuation(details)


@pytest.fixture
def old_server() -> Iterator[tuple[str, _OldService]]:
    service = _OldService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         interceptors=[_Counter(service)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(protocol.SERVICE, {
        "ListPlugins": grpc.unary_unary_rpc_method_handler(
            service.list_plugins, request_deserializer=pb.ListPluginsRequest.FromString,
            response_serializer=pb.ListPluginsResponse.SerializeToString),
        "Invoke": grpc.unary_unary_rpc_method_handler(
            service.invoke, request_deserializer=pb.InvokeRequest.FromString,
            response_serializer=pb.InvokeResponse.SerializeToString),
    }),))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(None)


def test_a_server_without_invoke_stream_is_called_with_invoke_asking_once(
        old_server: tuple[str, _OldService], tmp_path: Path) -> None:
    address, service = old_server
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: old-server
steps:
  - id: one
    plugin: grpc://{address}/shout
    inputs: {{text: hello}}
  - id: two
    plugin: grpc://{address}/shout
    inputs: {{text: $one.text}}
""", encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", "--json-out", "result.json",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["outputs"]["two"] == {"text": "HELLO!!"}
    asked = [method.rsplit("/", 1)[1] for method in service.asked
             if method.startswith(f"/{protocol.SERVICE}/")]
    assert asked.count("InvokeStream") == 1  # the first call learns it; the second knows
    assert asked.count("Invoke") == 2
