"""``flowhost-plugin serve`` survives plugins that misbehave: each fault fails its own call
with a status, and the server keeps answering calls and health checks.

The plugins are in ``faulty_plugins.py``; every server is a real process on a free loopback
port, called with a plain grpcio client."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from plugin_servers import HERE, Served, StartServer, plugin_command

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

Code = grpc.StatusCode
RAISERS = ("faulty_plugins:SyncRaiser", "faulty_plugins:AsyncRaiser")


class Client:
    """A plain grpcio client: Invoke and the health check."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._invoke = self.channel.unary_unary(
            protocol.INVOKE, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString)
        self._health = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def invoke(self, plugin: str, inputs: dict[str, Any], timeout: float = 10
               ) -> dict[str, Any]:
        reply = self._invoke(pb.InvokeRequest(plugin=plugin, inputs_json=json.dumps(
            inputs).encode(), run_id="r1", step_id="s1", attempt=1), timeout=timeout)
        result: dict[str, Any] = json.loads(reply.outputs_json)
        return result

    def fails(self, plugin: str, inputs: dict[str, Any], timeout: float = 10) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            self.invoke(plugin, inputs, timeout)
        return caught.value

    def health(self, service: str = "") -> str:
        reply = self._health(health_pb2.HealthCheckRequest(service=service), timeout=5)
        status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return status

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def connect() -> Iterator[Callable[[Served], Client]]:
    clients: list[Client] = []

    def open_client(served: Served) -> Client:
        clients.append(Client(served.address))
        return clients[-1]

    try:
        yield open_client
    finally:
        for client in clients:
            client.close()


def metadata(error: Any) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


def eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def assert_still_serving(served: Served, client: Client, plugin: str) -> None:
    assert served.proc.poll() is None, served.stderr()
    assert client.invoke(plugin, {}) == {"ok": True}
    assert client.health() == "SERVING"
    assert client.health(plugin) == "SERVING"


# KeyboardInterrupt and SystemExit used to stop the server (the client saw GOAWAY); the
# other BaseExceptions, and a CancelledError of the plugin's own, left the call unanswered
# until its deadline.
@pytest.mark.parametrize("plugin", ["sync-raiser", "async-raiser"])
@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "SystemExit", "BaseException",
                                    "Escape", "CancelledError"])
def test_whatever_a_plugin_raises_fails_only_that_call(
        plugin_server: StartServer, connect: Callable[[Served], Client], plugin: str,
        raised: str) -> None:
    served = plugin_server(*RAISERS)
    client = connect(served)
    error = client.fails(plugin, {"throw": raised, "message": "stop it"}, timeout=5)
    assert error.code() is Code.INTERNAL, error.details()
    assert error.details() == f"{raised}: stop it"
    meta = metadata(error)
    assert (meta[protocol.KIND_KEY], meta[protocol.TYPE_KEY]) == ("permanent", raised)
    assert_still_serving(served, client, plugin)


def test_a_lone_surrogate_in_the_outputs_is_invalid_outputs_naming_the_field(
        plugin_server: StartServer, connect: Callable[[Served], Client]) -> None:
    served = plugin_server("faulty_plugins:Listing")
    client = connect(served)
    error = client.fails("listing", {"bad": True})
    assert error.code() is Code.INTERNAL
    assert "outputs of listing cannot be sent as JSON: field 'files.1'" in (
        error.details() or "")
    assert "caf\\udce9" in (error.details() or "")
    meta = metadata(error)
    assert (meta[protocol.KIND_KEY], meta[protocol.TYPE_KEY]) == ("permanent", "InvalidOutputs")
    assert client.invoke("listing", {"bad": False})["files"] == ["menu.txt", "cafe"]
    assert client.health("listing") == "SERVING"


def test_a_deadline_still_cancels_a_sync_call(plugin_server: StartServer,
                                              connect: Callable[[Served], Client],
                                              tmp_path: Path) -> None:
    served = plugin_server("faulty_plugins:Polite")
    client = connect(served)
    marker = tmp_path / "cancelled"
    error = client.fails("polite", {"marker": str(marker)}, timeout=0.5)
    assert error.code() is Code.DEADLINE_EXCEEDED
    assert eventually(marker.exists), "the plugin never saw ctx.cancelled"
    assert client.health("polite") == "SERVING"


def test_stuck_sync_calls_take_every_worker_then_calls_are_refused_until_one_frees(
        plugin_server: StartServer, connect: Callable[[Served], Client],
        tmp_path: Path) -> None:
    served = plugin_server("faulty_plugins:Stuck", "faulty_plugins:SyncEcho",
                           "faulty_plugins:AsyncEcho", "--max-workers", "2")
    client = connect(served)
    release = tmp_path / "release"
    for _ in range(2):  # both threads stay busy after their clients give up
        error = client.fails("stuck", {"release": str(release)}, timeout=0.5)
        assert error.code() is Code.DEADLINE_EXCEEDED

    # Refused, not queued behind the stuck calls until its own deadline.
    error = client.fails("sync-echo", {"text": "hi"}, timeout=5)
    assert error.code() is Code.RESOURCE_EXHAUSTED, error.details()
    details = error.details() or ""
    assert "all 2 worker threads of this plugin server are busy" in details
    assert "2 of them with calls their clients abandoned" in details
    meta = metadata(error)
    assert meta[protocol.KIND_KEY] == "transient"
    assert "--max-workers" in protocol.decode_text(meta[protocol.HINT_KEY])
    for service in ("", "stuck", "sync-echo"):
        assert client.health(service) == "NOT_SERVING", service

    # The event loop is not a worker thread: async plugins still answer.
    assert client.invoke("async-echo", {"text": "async"}) == {"text": "async"}
    assert client.health("async-echo") == "SERVING"

    release.touch()
    assert eventually(lambda: client.health() == "SERVING")
    assert client.health("sync-echo") == "SERVING"
    assert client.invoke("sync-echo", {"text": "again"}) == {"text": "again"}
    assert served.proc.poll() is None


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_max_workers_must_be_a_whole_number_from_one(value: str) -> None:
    done = subprocess.run([*plugin_command(), "serve", "faulty_plugins:SyncEcho",
                           "--listen", "127.0.0.1:0", "--max-workers", value], cwd=HERE,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--max-workers" in done.stderr
    assert "Traceback" not in done.stderr
