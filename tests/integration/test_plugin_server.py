"""``flowhost-plugin serve``, as a real process on a free loopback port, called over gRPC.

Every bad request gets the right status code and a clear message, and the server keeps
serving afterwards."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import Certs
from grpc_health.v1 import health_pb2
from plugin_servers import HERE, Served, StartServer, plugin_command

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

Code = grpc.StatusCode


class Client:
    """A plain grpcio client of one plugin server (what any host would do)."""

    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        options = [("grpc.max_send_message_length", max_bytes),
                   ("grpc.max_receive_message_length", max_bytes)]
        self.channel = (grpc.secure_channel(address, credentials, options) if credentials
                        else grpc.insecure_channel(address, options))
        self._invoke = self.channel.unary_unary(
            protocol.INVOKE, request_serializer=pb.InvokeRequest.SerializeToString,
            response_deserializer=pb.InvokeResponse.FromString)
        self._list = self.channel.unary_unary(
            protocol.LIST_PLUGINS, request_serializer=pb.ListPluginsRequest.SerializeToString,
            response_deserializer=pb.ListPluginsResponse.FromString)
        self._health = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def invoke(self, plugin: str, inputs: Any = None, *, raw: bytes | None = None,
               timeout: float | None = 10, attempt: int = 1) -> dict[str, Any]:
        payload = raw if raw is not None else json.dumps(inputs or {}).encode()
        reply = self._invoke(pb.InvokeRequest(plugin=plugin, inputs_json=payload, run_id="r1",
                                              step_id="s1", attempt=attempt), timeout=timeout)
        result: dict[str, Any] = json.loads(reply.outputs_json)
        return result

    def fails(self, plugin: str, inputs: Any = None, **kwargs: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            self.invoke(plugin, inputs, **kwargs)
        return caught.value

    def plugins(self) -> dict[str, pb.PluginDescriptor]:
        return {p.name: p for p in self._list(pb.ListPluginsRequest(), timeout=10).plugins}

    def health(self, service: str = "") -> str:
        reply = self._health(health_pb2.HealthCheckRequest(service=service), timeout=10)
        status: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return status

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def served(plugin_server: StartServer) -> Served:
    return plugin_server("echo", "fail", "crash", "bad-output",
                         "remote_plugins:Deadline", "remote_plugins:Hinted",
                         "remote_plugins:SyncBlock", "remote_plugins:Big")


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    client = Client(served.address)
    try:
        yield client
    finally:
        client.close()


def metadata(error: Any) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


def test_ready_line_names_the_plugins_and_the_real_port(served: Served, client: Client) -> None:
    assert served.port > 0
    assert served.names == ["echo", "fail", "crash", "bad-output", "deadline", "hinted",
                            "sync-block", "big"]
    described = client.plugins()
    assert set(described) == set(served.names)
    echo = described["echo"]
    assert (echo.version, echo.idempotent) == ("1.2.0", False)
    assert json.loads(echo.input_schema_json)["required"] == ["text"]
    assert "length" in json.loads(echo.output_schema_json)["properties"]
    assert client.invoke("echo", {"text": "héllo"})["length"] == 5


def test_health_is_serving_overall_and_per_plugin(served: Served, client: Client) -> None:
    assert client.health() == "SERVING"
    for name in served.names:
        assert client.health(name) == "SERVING"
    with pytest.raises(grpc.RpcError) as caught:
        client.health("not-served")
    assert caught.value.code() is Code.NOT_FOUND


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "inputs_json is not valid JSON"),
    (b"", "inputs_json is not valid JSON"),
    (b"\xff\xfe", "inputs_json is not valid JSON"),
    (b"[1, 2]", "inputs_json must be a JSON object, not list"),
    (b'{"text": 3}', "inputs rejected by echo: field 'text'"),
    (b"{}", "field 'text': Field required"),
    (b'{"text": "a", "n": NaN}', "NaN is not a JSON value"),
    (b'{"text": "a", "n": -Infinity}', "-Infinity is not a JSON value"),
])
def test_bad_inputs_are_invalid_argument_and_the_server_keeps_serving(
        client: Client, raw: bytes, message: str) -> None:
    error = client.fails("echo", raw=raw)
    assert error.code() is Code.INVALID_ARGUMENT
    assert message in (error.details() or "")
    assert metadata(error)[protocol.KIND_KEY] == "permanent"
    assert client.invoke("echo", {"text": "still here"})["text"] == "still here"


def test_an_unknown_plugin_is_not_found_naming_what_is_served(client: Client) -> None:
    error = client.fails("ecoh", {"text": "x"})
    assert error.code() is Code.NOT_FOUND
    assert "no plugin named 'ecoh'" in (error.details() or "")
    assert "echo" in (error.details() or "")
    assert client.invoke("echo", {"text": "ok"})["text"] == "ok"


def test_a_request_past_the_default_16_mib_limit_is_resource_exhausted(client: Client) -> None:
    text = "x" * (16 * 1024 * 1024 + 10)
    error = client.fails("echo", {"text": text})
    assert error.code() is Code.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.details() or "")
    mapped = protocol.error_from_status(error.code(), error.details(), metadata(error).items())
    assert mapped.kind == "permanent"  # retrying the same payload cannot help
    assert mapped.hint is not None and "--max-message-bytes" in mapped.hint
    # Just under the limit still works, and the server is still there.
    assert client.invoke("echo", {"text": "x" * (15 * 1024 * 1024)})["length"] == 15 * 1024 * 1024


def test_max_message_bytes_bounds_requests_and_responses(plugin_server: StartServer) -> None:
    served = plugin_server("remote_plugins:Big", "--max-message-bytes", "4096")
    client = Client(served.address)
    try:
        error = client.fails("big", {"size": 1, "padding": "p" * 8000})
        assert error.code() is Code.RESOURCE_EXHAUSTED
        assert "4096" in (error.details() or "")
        error = client.fails("big", {"size": 8000})
        assert error.code() is Code.RESOURCE_EXHAUSTED
        assert "past this server's message limit of 4096 bytes" in (error.details() or "")
        mapped = protocol.error_from_status(error.code(), error.details(),
                                            metadata(error).items())
        assert mapped.kind == "permanent"
        assert mapped.hint is not None and "--max-message-bytes" in mapped.hint
        assert client.invoke("big", {"size": 100})["text"] == "x" * 100
    finally:
        client.close()


@pytest.mark.parametrize(("kind", "code"), [
    ("transient", Code.UNAVAILABLE),
    ("permanent", Code.FAILED_PRECONDITION),
    ("intervention", Code.FAILED_PRECONDITION),
])
def test_plugin_errors_become_status_codes_and_metadata(client: Client, kind: str,
                                                        code: grpc.StatusCode) -> None:
    error = client.fails("fail", {"kind": kind, "message": "db locked", "hint": "Unlock it"})
    assert error.code() is code
    assert error.details() == "db locked"
    meta = metadata(error)
    assert meta[protocol.KIND_KEY] == kind
    assert meta[protocol.HINT_KEY] == "Unlock it"
    assert client.invoke("echo", {"text": "after"})["text"] == "after"


def test_an_unexpected_exception_is_internal_with_its_type_and_text(client: Client) -> None:
    error = client.fails("crash")
    assert error.code() is Code.INTERNAL
    assert error.details() == "ZeroDivisionError: division by zero in the plugin"
    assert metadata(error)[protocol.KIND_KEY] == "permanent"
    assert metadata(error)[protocol.TYPE_KEY] == "ZeroDivisionError"


def test_outputs_that_do_not_match_the_outputs_model_are_internal_naming_the_field(
        client: Client) -> None:
    error = client.fails("bad-output")
    assert error.code() is Code.INTERNAL
    assert "outputs of bad-output do not match its Outputs: field 'count'" in (
        error.details() or "")


def test_a_non_ascii_hint_and_retry_after_travel_in_metadata(client: Client) -> None:
    error = client.fails("hinted")
    assert error.code() is Code.UNAVAILABLE
    meta = metadata(error)
    assert meta[protocol.RETRY_AFTER_KEY] == "0.25"
    assert protocol.decode_text(meta[protocol.HINT_KEY]) == "Wait — or start Rédis"
    mapped = protocol.error_from_status(error.code(), error.details(), meta.items())
    assert (mapped.kind, mapped.hint, getattr(mapped, "retry_after", None)) == (
        "transient", "Wait — or start Rédis", 0.25)


def test_the_call_deadline_reaches_the_plugin_context(client: Client) -> None:
    outputs = client.invoke("deadline", timeout=5, attempt=3)
    assert 3.5 < outputs["remaining"] <= 5.1
    assert (outputs["attempt"], outputs["run_id"], outputs["step_id"]) == (3, "r1", "s1")
    assert client.invoke("deadline", timeout=None)["remaining"] is None


def test_sync_plugins_run_off_the_event_loop_in_parallel(client: Client) -> None:
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(
        client.invoke("sync-block", {"seconds": 1.0}))) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    probe = time.monotonic()
    assert client.health("sync-block") == "SERVING"  # the loop answers meanwhile
    assert time.monotonic() - probe < 0.5
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 2.5  # three 1 s calls at once, not one after another
    assert len(results) == 3
    assert not any(r["main_thread"] for r in results)


def test_sigterm_lets_calls_in_flight_finish_then_exits_0(plugin_server: StartServer) -> None:
    served = plugin_server("remote_plugins:Slow", "--grace", "5")
    client = Client(served.address)
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        try:
            outcome["result"] = client.invoke("slow", {"seconds": 1.0})
        except grpc.RpcError as exc:
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=slow_call)
        thread.start()
        time.sleep(0.3)
        served.proc.send_signal(signal.SIGTERM)
        thread.join(10)
        assert outcome.get("result") == {"slept": 1.0}, outcome
        assert served.proc.wait(10) == 0
        assert "stopping" in served.stderr()
    finally:
        client.close()


def test_tls_serves_clients_that_trust_its_ca(plugin_server: StartServer, certs: Certs) -> None:
    served = plugin_server("echo", "--tls-cert", str(certs.server_cert),
                           "--tls-key", str(certs.server_key))
    assert served.ready_line.endswith(f"on {served.address} with TLS")
    trusted = Client(served.address, grpc.ssl_channel_credentials(certs.ca.read_bytes()))
    plaintext = Client(served.address)
    try:
        assert trusted.invoke("echo", {"text": "secret"})["text"] == "secret"
        error = plaintext.fails("echo", {"text": "x"})
        assert error.code() is Code.UNAVAILABLE
        assert trusted.invoke("echo", {"text": "again"})["text"] == "again"
    finally:
        trusted.close()
        plaintext.close()


def test_mutual_tls_refuses_clients_without_the_right_certificate(
        plugin_server: StartServer, certs: Certs) -> None:
    served = plugin_server("echo", "--tls-cert", str(certs.server_cert), "--tls-key",
                           str(certs.server_key), "--tls-client-ca", str(certs.ca))
    assert served.ready_line.endswith("with mTLS")
    ca = certs.ca.read_bytes()
    good = Client(served.address, grpc.ssl_channel_credentials(
        ca, certs.client_key.read_bytes(), certs.client_cert.read_bytes()))
    anonymous = Client(served.address, grpc.ssl_channel_credentials(ca))
    rogue = Client(served.address, grpc.ssl_channel_credentials(
        ca, certs.rogue_key.read_bytes(), certs.rogue_cert.read_bytes()))
    try:
        assert good.invoke("echo", {"text": "hi"})["text"] == "hi"
        for stranger in (anonymous, rogue):
            error = stranger.fails("echo", {"text": "x"}, timeout=5)
            assert error.code() is Code.UNAVAILABLE
            assert error.details()
        assert good.invoke("echo", {"text": "still"})["text"] == "still"
        assert served.proc.poll() is None
    finally:
        for client in (good, anonymous, rogue):
            client.close()


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*plugin_command(), *args], cwd=HERE, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["serve", "no_such_module:Plugin"], "cannot load no_such_module:Plugin"),
    (["serve", "remote_plugins:Nope"], "cannot load remote_plugins:Nope"),
    (["serve", "json:dumps"], "is not a subclass of flowhost_sdk.Plugin"),
    (["serve", "not-installed"], "neither module:Class nor the name of an installed plugin"),
    (["serve", "echo", "--listen", "nowhere"], "is not HOST:PORT"),
    (["serve", "echo", "--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
    (["serve", "echo", "--tls-client-ca", "ca.pem"], "needs the server's own certificate"),
    (["serve", "echo", "--tls-cert", "missing.pem", "--tls-key", "missing.key"],
     "--tls-cert missing.pem"),
    (["serve", "echo", "echo"], "two plugins are named 'echo'"),
])
def test_bad_command_lines_exit_2_with_a_message(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_busy_port_is_an_error(plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("echo")
    done = run_cli("serve", "echo", "--listen", served.address)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line: no gRPC log line before it
    said = re.fullmatch(rf"flowhost-plugin: {re.escape(served.address)} is in use by another "
                        rf"program; choose another port, e\.g\. --listen {served.host}:(\d+) "
                        rf"\(or {served.host}:0 for any free one\)", lines[0])
    assert said is not None, lines[0]
    assert int(said.group(1)) != served.port
