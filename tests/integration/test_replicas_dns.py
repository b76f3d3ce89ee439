"""A remote plugin behind a DNS name, ``grpc://dns://DNS-SERVER/NAME:PORT``, as a headless
Kubernetes Service gives one: real ``flowhost-plugin serve`` processes on 127.0.0.2, .3,
.4 and .5 (all loopback on Linux), one port, and a small DNS server in this test that
answers ``plugins.test`` with the addresses it is told. gRPC's own c-ares resolver asks it
(the authority of a ``dns://`` target names the DNS server to ask).

What it proves: a ``dns:///`` target spreads calls round-robin over every address the name
has; a server added to the name's answers gets its share without a new channel, because the
servers' maximum connection age closes connections and a closed connection makes the
channel resolve the name again; an address dropped from the answers gets no more calls.
gRPC resolves a name at most once per 30 s by default
(``grpc.dns_min_time_between_resolutions_ms``); the test lowers that so it runs in seconds.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from plugin_servers import Served, StartServer

from flowhost.invokers.grpc.discovery import list_plugins
from flowhost.invokers.grpc.endpoint import Endpoint
from flowhost.invokers.grpc.invoker import GrpcInvoker
from flowhost.remote_targets import parse_remote_url
from flowhost_sdk import InvocationContext

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux",
                       reason="needs 127.0.0.2-5, which only Linux routes to lo"),
    # gRPC's native resolver asks the system's DNS only; c-ares (the default) takes a server.
    pytest.mark.skipif(os.environ.get("GRPC_DNS_RESOLVER", "ares") != "ares",
                       reason="needs gRPC's c-ares resolver (GRPC_DNS_RESOLVER unset)"),
]
ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
A, AAAA = 1, 28


class NameServer:
    """Answers every A query with ``addresses`` (and everything else with no records), over
    UDP on 127.0.0.1; a thread of this process, stopped by closing its socket."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._sock.recvfrom(512)
            except OSError:  # closed: the test is over
                return
            self.queries += 1
            self._sock.sendto(self._answer(query), peer)

    def _answer(self, query: bytes) -> bytes:
        (ident,) = struct.unpack("!H", query[:2])
        end = 12
        while query[end]:  # the question's name: length-prefixed labels, then a zero
            end += query[end] + 1
        question = query[12:end + 5]  # name, type, class
        (qtype,) = struct.unpack("!H", query[end + 1:end + 3])
        records = b""
        addresses = list(self.addresses) if qtype == A else []
        for address in addresses:  # the name by a pointer to the question's, TTL 1 s
            records += struct.pack("!HHHIH", 0xC00C, A, 1, 1, 4) + socket.inet_aton(address)
        header = struct.pack("!HHHHHH", ident, 0x8180, 1, len(addresses), 0, 0)
        return header + question + records

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


@pytest.fixture
def name_server() -> Iterator[NameServer]:
    server = NameServer()
    try:
        yield server
    finally:
        server.close()


class QuickResolve(Endpoint):
    """The host's endpoint, resolving again as soon as gRPC asks (see the module's text)."""

    def options(self) -> list[tuple[str, Any]]:
        return [*super().options(), ("grpc.dns_min_time_between_resolutions_ms", 100)]


def free_port_on_all() -> int:
    """A port free on every address of ADDRESSES."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((ADDRESSES[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for address in ADDRESSES[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on all of " + ", ".join(ADDRESSES))


async def calls(invoker: GrpcInvoker, count: int) -> collections.Counter[int]:
    """``count`` calls, 8 at a time: how many each server (pid) answered."""
    answered: collections.Counter[int] = collections.Counter()
    slots = asyncio.Semaphore(8)

    async def one() -> None:
        async with slots:
            ctx = InvocationContext(run_id="dns", step_id="s", attempt=1)
            answered[(await invoker.invoke({}, ctx))["pid"]] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return answered


def shared_evenly(answered: collections.Counter[int], servers: list[Served]) -> bool:
    expected = sum(answered.values()) / len(servers)
    return set(answered) == {s.proc.pid for s in servers} and all(
        abs(answered[s.proc.pid] - expected) <= 0.10 * expected for s in servers)


async def test_a_dns_name_spreads_calls_and_a_server_added_to_it_gets_its_share(
        plugin_server: StartServer, name_server: NameServer) -> None:
    port = free_port_on_all()
    servers = [plugin_server("whoami", "--listen", f"{address}:{port}",
                             "--max-connection-age", "1") for address in ADDRESSES]
    name_server.addresses = ADDRESSES[:3]
    target, _ = parse_remote_url(f"grpc://dns://127.0.0.1:{name_server.port}/plugins.test:{port}")
    assert target.balanced and target.url.startswith("grpc://dns://")
    endpoint = QuickResolve(target)
    descriptor = (await asyncio.to_thread(list_plugins, endpoint, 5))["whoami"]
    invoker = GrpcInvoker(descriptor, endpoint)

    first = await calls(invoker, 900)
    assert shared_evenly(first, servers[:3]), first

    # A fourth replica joins the name (a scale-up); the channel is the same one.
    name_server.addresses = list(ADDRESSES)
    for _ in range(100):  # until a connection has aged and the name was resolved again
        if servers[3].proc.pid in await calls(invoker, 40):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server added to the name never got a call")
    second = await calls(invoker, 1200)
    assert shared_evenly(second, servers), second

    # One leaves the name (a scale-down): it gets no more calls once the name is resolved
    # again, while it is still running.
    name_server.addresses = ADDRESSES[1:]
    for _ in range(100):
        if servers[0].proc.pid not in await calls(invoker, 40):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the server dropped from the name kept getting calls")
    third = await calls(invoker, 900)
    assert servers[0].proc.poll() is None and shared_evenly(third, servers[1:]), third
