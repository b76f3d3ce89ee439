"""flowhost_sdk.serve / serve_async / PluginServer from Python (the command line and the
wire behaviour are covered by tests/integration/test_plugin_server.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from flowhost_test_plugins.basic import Echo, Noop
from flowhost_test_plugins.failing import NotAPlugin
from grpc import aio

import flowhost_sdk
from flowhost_sdk import PluginServer, protocol, serve, serve_async
from flowhost_sdk._proto import plugin_pb2 as pb
from flowhost_sdk.server import ServeError


async def call(address: str, plugin: str, inputs: dict[str, object]) -> dict[str, object]:
    async with aio.insecure_channel(address) as channel:
        invoke = channel.unary_unary(protocol.INVOKE,
                                     request_serializer=pb.InvokeRequest.SerializeToString,
                                     response_deserializer=pb.InvokeResponse.FromString)
        reply = await invoke(pb.InvokeRequest(plugin=plugin, inputs_json=json.dumps(
            inputs).encode()), timeout=10)
        result: dict[str, object] = json.loads(reply.outputs_json)
        return result


async def test_serve_async_until_stopped() -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    async def ready(server: PluginServer) -> None:
        seen.append(server.ready_line())
        assert await call(server.address, "noop", {"value": 4}) == {"value": 5}
        stop.set()

    await asyncio.wait_for(serve_async([Noop(), Echo], "127.0.0.1:0", ready=ready, stop=stop,
                                       handle_signals=False), 20)
    assert seen and seen[0].startswith("flowhost-plugin: serving noop, echo on 127.0.0.1:")


async def test_serve_async_takes_max_workers() -> None:
    stop = asyncio.Event()
    seen: list[int] = []

    def ready(server: PluginServer) -> None:
        seen.append(server.max_workers)
        stop.set()

    await asyncio.wait_for(serve_async([Noop()], "127.0.0.1:0", max_workers=3, ready=ready,
                                       stop=stop, handle_signals=False), 20)
    assert seen == [3]


def test_max_workers_must_be_at_least_one() -> None:
    with pytest.raises(ServeError, match="max_workers must be at least 1, got 0"):
        PluginServer([Noop], "127.0.0.1:0", max_workers=0)


async def test_serve_blocks_so_it_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="serve_async"):
        serve([Noop()], "127.0.0.1:0")


@pytest.mark.parametrize(("plugins", "address", "message"), [
    ([], "127.0.0.1:0", "no plugins to serve"),
    ([Noop, Noop()], "127.0.0.1:0", "two plugins are named 'noop'"),
    ([NotAPlugin], "127.0.0.1:0", "is not a subclass of flowhost_sdk.Plugin"),
    ([Noop], "localhost", "is not HOST:PORT"),
])
def test_bad_servers_are_refused_before_listening(plugins: list[object], address: str,
                                                  message: str) -> None:
    with pytest.raises(ServeError, match=message):
        PluginServer(plugins, address)  # type: ignore[arg-type]


async def test_tls_needs_a_certificate_and_its_key() -> None:
    with pytest.raises(ServeError, match="both a certificate and its key"):
        await serve_async([Noop], "127.0.0.1:0", tls_cert=b"pem", handle_signals=False)
    with pytest.raises(ServeError, match="needs the server's own certificate"):
        await serve_async([Noop], "127.0.0.1:0", tls_client_ca=b"pem", handle_signals=False)
    with pytest.raises(ServeError, match="--tls-key the given PEM: not a PEM file"):
        await serve_async([Noop], "127.0.0.1:0", tls_cert=b"-----BEGIN CERTIFICATE-----",
                          tls_key=b"garbage", handle_signals=False)


def test_importing_the_sdk_does_not_import_grpc() -> None:
    code = "import sys, flowhost_sdk; print('grpc' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
    assert flowhost_sdk.serve is serve  # loaded on first use
