"""One remote plugin behind several real ``flowhost-plugin serve`` processes (CONTRACT §12):
calls spread round-robin over the healthy ones, a server that stops serving (or dies) is
left out, and a server added to the ``[remote]`` list gets calls from the next run.

The calls go through the host's own invoker (``Catalog`` -> ``GrpcInvoker``), in this
process, over real gRPC to real servers on loopback; the plugin (``whoami``) answers with
its server's pid, which is how the calls are counted per server. A call that fails
transiently is made again, as the recovery ladder would.
"""

from __future__ import annotations

import asyncio
import collections
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from certs import Certs
from plugin_servers import Served, StartServer

from flowhost.catalog import Catalog
from flowhost.config import HostConfig, load_config
from flowhost.invokers import Invoker
from flowhost.invokers.grpc.discovery import check_health
from flowhost_sdk import InvocationContext, TransientError

CALLS = 3000
AT_ONCE = 16  # calls in flight at a time


def invoker_for(servers: list[Served], name: str = "whoami") -> Invoker:
    """The invoker a run gets for ``[remote] whoami = [the servers' URLs]`` (described by
    ListPlugins of whichever server answers first)."""
    config = HostConfig.model_validate(
        {"remote": {name: [f"grpc://{served.address}/whoami" for served in servers]}})
    return Catalog(config).get(name)


class Caller:
    """Makes calls through one invoker, ``AT_ONCE`` at a time, counting who answered."""

    def __init__(self, invoker: Invoker) -> None:
        self.invoker = invoker
        self.answered: collections.Counter[int] = collections.Counter()
        self.transient = 0  # calls made again after a transient error
        self.done = 0

    async def call(self, inputs: dict[str, Any] | None = None) -> int:
        for attempt in range(1, 6):
            ctx = InvocationContext(run_id="replicas", step_id="s", attempt=attempt,
                                    plugin_attempt=attempt)
            try:
                outputs = await self.invoker.invoke(inputs or {}, ctx)
            except TransientError:
                self.transient += 1
                continue
            pid: int = outputs["pid"]
            self.answered[pid] += 1
            self.done += 1
            return pid
        raise AssertionError("a call failed five times over")

    async def many(self, count: int, *, after: Callable[[int], None] | None = None) -> None:
        """``count`` calls; ``after(n)`` runs once the n-th has been answered."""
        slots = asyncio.Semaphore(AT_ONCE)

        async def one() -> None:
            async with slots:
                await self.call()
                if after is not None:
                    after(self.done)

        await asyncio.gather(*(one() for _ in range(count)))


def pids(servers: list[Served]) -> list[int]:
    return [served.proc.pid for served in servers]


def within(share: int, expected: float, tolerance: float = 0.10) -> bool:
    return abs(share - expected) <= tolerance * expected


async def test_three_servers_share_3000_calls_and_one_killed_midway_is_left_out(
        plugin_server: StartServer) -> None:
    servers = [plugin_server("whoami") for _ in range(3)]
    invoker = await asyncio.to_thread(invoker_for, servers)
    assert invoker.transport == "grpc" and invoker.output_schema["required"] == ["pid"]
    caller = Caller(invoker)

    await caller.many(CALLS)

    shares = [caller.answered[pid] for pid in pids(servers)]
    assert sum(shares) == CALLS and caller.transient == 0
    assert all(within(share, CALLS / 3) for share in shares), shares

    # One is killed (SIGKILL: no goodbye) while calls go on: only the calls it had in
    # flight fail, and are made again on the others; every later call is answered.
    victim, survivors = servers[0], servers[1:]
    before = caller.answered.copy()
    killed_at: list[int] = []

    def kill_once(done: int) -> None:
        if not killed_at and done >= CALLS + 300:
            victim.proc.send_signal(signal.SIGKILL)
            killed_at.append(done)

    await caller.many(CALLS, after=kill_once)
    victim.proc.wait()

    assert caller.done == 2 * CALLS and killed_at
    assert caller.transient <= AT_ONCE, caller.transient
    after_kill = caller.answered - before
    # The victim answered only calls that were on their way when it died...
    assert after_kill[victim.proc.pid] <= killed_at[0] - CALLS + AT_ONCE
    # ...and the two others took the rest between them, in turn.
    rest = [after_kill[pid] for pid in pids(survivors)]
    assert sum(rest) >= CALLS - (killed_at[0] - CALLS) - AT_ONCE
    assert within(rest[0], sum(rest) / 2) and within(rest[1], sum(rest) / 2), rest


async def test_a_server_added_to_the_list_gets_its_share_from_the_next_run(
        plugin_server: StartServer) -> None:
    servers = [plugin_server("whoami") for _ in range(3)]
    first = Caller(await asyncio.to_thread(invoker_for, servers))
    await first.many(300)
    assert set(first.answered) == set(pids(servers))

    # The operator adds a fourth server to the [remote] list; a run that reads the file
    # again (a new Catalog) opens a channel over all four.
    servers.append(plugin_server("whoami"))
    second = Caller(await asyncio.to_thread(invoker_for, servers))
    await second.many(1200)
    shares = [second.answered[pid] for pid in pids(servers)]
    assert all(within(share, 300) for share in shares), shares


async def test_a_server_whose_health_says_not_serving_is_left_out_until_it_serves_again(
        plugin_server: StartServer) -> None:
    # An SDK server says NOT_SERVING while all its worker threads are busy: with one
    # thread, one long sync call makes it unhealthy, and its end makes it healthy again.
    busy = plugin_server("whoami", "sync-sleeper", "--max-workers", "1")
    servers = [busy, plugin_server("whoami"), plugin_server("whoami")]
    caller = Caller(await asyncio.to_thread(invoker_for, servers))
    await caller.many(300)
    assert caller.answered[busy.proc.pid] > 0

    config = HostConfig.model_validate({"remote": {"sleep": f"grpc://{busy.address}/sync-sleeper"}})
    sleeper = await asyncio.to_thread(Catalog(config).get, "sleep")
    ctx = InvocationContext(run_id="replicas", step_id="sleep", attempt=1)
    holding = asyncio.ensure_future(sleeper.invoke({"seconds": 600}, ctx))
    try:
        await until_health(busy, "NOT_SERVING")
        # The channel learns it from its own health watch: once a call has gone to
        # another server ten times in a row, none goes to the busy one any more.
        in_a_row = 0
        for _ in range(1000):
            in_a_row = in_a_row + 1 if await caller.call() != busy.proc.pid else 0
            if in_a_row == 10:
                break
        assert in_a_row == 10
        before = caller.answered[busy.proc.pid]
        await caller.many(300)
        assert caller.answered[busy.proc.pid] == before
    finally:
        holding.cancel()  # the client gives up: the sleeper stops, its thread is free
    await until_health(busy, "SERVING")
    for _ in range(300):
        if await caller.call() == busy.proc.pid:
            break
    else:
        raise AssertionError("the server that serves again got no call")
    assert caller.transient == 0


async def until_health(served: Served, status: str) -> None:
    """Wait until the server's own health service says ``status`` (at most 30 s)."""
    from flowhost.invokers.grpc.endpoint import Endpoint
    from flowhost.remote_targets import parse_remote_url

    endpoint = Endpoint(parse_remote_url(f"grpc://{served.address}")[0])
    for _ in range(300):
        if await asyncio.to_thread(check_health, endpoint, "", 3) == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{served.address} never said {status}")


async def test_with_every_server_of_a_list_gone_a_call_is_a_transient_error_saying_so(
        plugin_server: StartServer) -> None:
    servers = [plugin_server("whoami") for _ in range(2)]
    invoker = await asyncio.to_thread(invoker_for, servers)
    for served in servers:
        served.stop(signal.SIGKILL)
    ctx = InvocationContext(run_id="replicas", step_id="s", attempt=1)
    try:
        await invoker.invoke({}, ctx)
    except TransientError as exc:  # the ladder retries it, then falls back
        assert "UNAVAILABLE" in str(exc) and exc.hint is not None
        assert "at least one healthy server" in exc.hint
    else:
        raise AssertionError("a call with no server succeeded")

    # Checking the workflow then: no server answers, so the plugin is not described.
    from flowhost.catalog import RemoteDown

    try:
        await asyncio.to_thread(invoker_for, servers, "again")
    except RemoteDown as exc:
        assert "at least one of its servers" in (exc.suggestion or ""), exc.suggestion
    else:
        raise AssertionError("a list with no server running was described")


async def test_a_list_of_grpcs_servers_with_mutual_tls(plugin_server: StartServer,
                                                       certs: Certs, tmp_path: Path) -> None:
    tls = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
           "--tls-client-ca", str(certs.ca))
    servers = [plugin_server("whoami", *tls) for _ in range(2)]
    tables = "".join(f'[tls."{served.address}"]\nca = "{certs.ca}"\ncert = '
                     f'"{certs.client_cert}"\nkey = "{certs.client_key}"\n'
                     for served in servers)
    urls = ", ".join(f'"grpcs://{served.address}"' for served in servers)
    (tmp_path / "flowhost.toml").write_text(f"[remote]\nwhoami = [{urls}]\n{tables}", "utf-8")
    config = load_config(cwd=tmp_path)
    invoker = await asyncio.to_thread(Catalog(config).get, "whoami")
    caller = Caller(invoker)
    await caller.many(200)
    # One channel, one certificate name (the host both share) checked for each server;
    # both answer (the first calls may all go to the first whose handshake is done).
    assert set(caller.answered) == set(pids(servers)) and caller.transient == 0


async def test_a_list_of_host_names_is_looked_up_when_its_channel_opens(
        plugin_server: StartServer) -> None:
    servers = [plugin_server("whoami") for _ in range(2)]
    config = HostConfig.model_validate(
        {"remote": {"whoami": [f"grpc://localhost:{served.port}" for served in servers]}})
    caller = Caller(await asyncio.to_thread(Catalog(config).get, "whoami"))
    await caller.many(200)
    assert set(caller.answered) == set(pids(servers)) and caller.transient == 0
