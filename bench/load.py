"""Load on one daemon: ``--runs`` (1,000) runs queued at once and ``--streams`` (200)
``WatchRun`` streams open on them, on one ``flowhost serve`` subprocess (started as
bench/daemon.py starts it: a free loopback port, a fresh state dir).

1. Idle: ``--samples`` health checks (grpc.health.v1 Check), GetRun and SubmitRun calls one
   after another, for comparison.
2. Loaded: the runs (``--steps``-step no-op chains) are submitted at once from 16 threads;
   then ``--streams`` streams open on runs spread over the queue, most of them still queued,
   and follow each from its first event to its RunFinished. Meanwhile a prober asks every
   ``--probe-ms`` (20) for the daemon's health, for a random run (GetRun), and every tenth
   time submits one more run. The streams are followed by a client process of its own
   (grpc.aio, one event loop), so that its work does not slow the prober's calls.

Printed: p50, p99 and max of SubmitRun, GetRun and Check, idle and loaded; how many health
checks answered SERVING; the streams: how many ended after RunFinished with seqs 1..n
without a gap, the events they carried, the time from an event being made to its arrival;
the daemon process's RSS (``flowhost serve`` itself, not its workers) idle, at its peak and
after; the time until every run finished. No assertions (machines are shared and noisy);
tests/integration/test_load.py runs ``load`` small and checks what it must.

    python bench/load.py [--runs 1000] [--streams 200] [--steps 5] [--max-runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import grpc
from _common import now
from daemon import chain_spec, daemon, finished, percentile, submit
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowhost._proto import host_pb2 as pb
from flowhost._proto import host_pb2_grpc
from flowhost.daemon.server import DEFAULT_MAX_RUNS

FINAL = ("success", "failed", "aborted", "cancelled")
Metadata = tuple[tuple[str, str], ...]


# -- the streams: a client of their own ----------------------------------------------------

@dataclass
class Streams:
    """What the streams saw: per stream, whether it ended as it should; all its events."""

    opened: int = 0
    ended_after_finish: int = 0  # the stream ended (OK) right after its run's RunFinished
    gap_free: int = 0  # seqs 1, 2, ..., n
    events: int = 0
    latencies: list[float] = field(default_factory=list)  # event made -> arrived, live ones
    errors: dict[str, int] = field(default_factory=dict)  # status code name -> streams


def follow(address: str, run_ids: Sequence[str], metadata: Metadata = (),
           timeout: float = 3600) -> Streams:
    """Follow a WatchRun stream of each run, all at once on one event loop, to its end."""
    return asyncio.run(_follow(address, list(run_ids), metadata, timeout))


async def _follow(address: str, run_ids: list[str], metadata: Metadata,
                  timeout: float) -> Streams:
    found = Streams(opened=len(run_ids))
    async with aio.insecure_channel(address) as channel:
        stub = host_pb2_grpc.HostServiceStub(channel)  # type: ignore[no-untyped-call]

        async def one(run_id: str) -> None:
            opened, seqs, last = time.time(), [], ""
            try:
                call = stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=timeout,
                                     metadata=metadata or None)
                async for event in call:
                    seqs.append(event.seq)
                    last = event.type
                    if event.at >= opened:  # live, not replayed
                        found.latencies.append(time.time() - event.at)
            except grpc.RpcError as exc:
                name = exc.code().name
                found.errors[name] = found.errors.get(name, 0) + 1
                return
            found.events += len(seqs)
            found.ended_after_finish += last == "RunFinished"
            found.gap_free += seqs == list(range(1, len(seqs) + 1))

        await asyncio.gather(*(one(run_id) for run_id in run_ids))
    return found


# -- the prober ----------------------------------------------------------------------------

@dataclass
class Calls:
    """Seconds each call took, by RPC; health answers that were not SERVING."""

    submit: list[float] = field(default_factory=list)
    getrun: list[float] = field(default_factory=list)
    check: list[float] = field(default_factory=list)
    not_serving: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # calls that failed, by status code
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def timed(self, into: list[float], call: Callable[[], Any]) -> Any:
        sent = now()
        answer = call()
        elapsed = now() - sent
        with self.lock:
            into.append(elapsed)
        return answer


class Client:
    """The prober's side: a HostService stub and a health stub on one channel."""

    def __init__(self, address: str, metadata: Metadata = ()) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = host_pb2_grpc.HostServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.metadata = metadata or None

    def serving(self) -> bool:
        answer = self.health.Check(health_pb2.HealthCheckRequest(), timeout=60)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def submit(self, text: str) -> str:
        if self.metadata is None:
            return submit(self.stub, text)
        answer = self.stub.SubmitRun(pb.SubmitRunRequest(spec_yaml=text, spec_name="load.yaml"),
                                     timeout=60, metadata=self.metadata)
        return str(answer.run_id)

    def get(self, run_id: str) -> bytes:
        answer = self.stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=60,
                                  metadata=self.metadata)
        return bytes(answer.result_json)

    def close(self) -> None:
        self.channel.close()


def probe_once(client: Client, calls: Calls, run_ids: list[str], text: str,
               submit_too: bool) -> None:
    if not calls.timed(calls.check, client.serving):
        with calls.lock:
            calls.not_serving += 1
    if run_ids:
        chosen = random.choice(run_ids)
        calls.timed(calls.getrun, lambda: client.get(chosen))
    if submit_too:
        run_ids.append(calls.timed(calls.submit, lambda: client.submit(text)))


def idle(client: Client, state: Path, samples: int, text: str) -> Calls:
    """``samples`` calls of each kind, one after another, on a daemon with nothing else to
    do; it returns once the runs it submitted have finished."""
    calls, ids = Calls(), [client.submit(text)]
    for _ in range(samples):
        probe_once(client, calls, ids, text, submit_too=True)
    wait_ended(state, len(ids))
    return calls


# -- the load ------------------------------------------------------------------------------

GATE = ("workflow_id: load-hold\nsteps:\n  - {{id: hold, plugin: gate, inputs: {{started: "
        "'{started}', release: '{release}', seconds: 3600}}}}\n")


@dataclass
class Load:
    submitted: int  # runs, the prober's included (not the holders)
    queued: int  # runs queued while the holders held every worker
    submit_seconds: float  # for the first ``runs``, submitted at once
    submits: list[float]  # seconds of each of those SubmitRun calls
    drain_seconds: float  # from the release of the workers until every run finished
    held: Calls  # while the runs were queued and the streams open on them
    draining: Calls  # while the workers went through the queue
    streams: Streams
    statuses: dict[str, int]  # of every run at the end
    rss_kib: list[int]  # the daemon's, sampled while loaded


Follow = Callable[[str, Sequence[str]], Streams]


def load(client: Client, address: str, state: Path, *, runs: int, streams: int, steps: int,
         workers: int, hold_s: float = 5.0, probe_s: float = 0.02,
         rss: Callable[[], int] | None = None, follower: Follow = follow) -> Load:
    """Every one of the daemon's ``workers`` held by a run that waits for a file; ``runs``
    runs submitted at once, queued behind them; ``streams`` WatchRun streams opened on
    runs spread over the queue; ``hold_s`` seconds of that, the prober calling the daemon;
    then the workers let go, until every run has finished (read from the state database)
    and every stream has ended."""
    text = chain_spec(steps)
    ids: list[str] = []
    burst, held, draining, stop = Calls(), Calls(), Calls(), threading.Event()
    phase = [held]
    rss_samples: list[int] = []

    def prober() -> None:
        beat = 0
        while not stop.is_set():
            calls = phase[0]
            try:
                probe_once(client, calls, ids, text, submit_too=beat % 10 == 9)
            except grpc.RpcError as exc:
                with calls.lock:
                    calls.errors[exc.code().name] = calls.errors.get(exc.code().name, 0) + 1
            if rss is not None:
                rss_samples.append(rss())
            beat += 1
            stop.wait(probe_s)

    before = ended(state)  # runs of earlier calls (bench: the idle phase), all finished
    release, holders = hold(client, state, workers)
    start = now()
    with ThreadPoolExecutor(16) as pool:
        ids += pool.map(lambda _: burst.timed(burst.submit, lambda: client.submit(text)),
                        range(runs))
    submitted = now() - start
    queued = finished(state, "queued")
    watched = ids[:: max(1, len(ids) // streams)][:streams]
    with ThreadPoolExecutor(1) as background:
        seen = background.submit(follower, address, watched)
        thread = threading.Thread(target=prober, daemon=True)
        thread.start()
        try:
            time.sleep(hold_s)
            phase[0] = draining
            release.write_text("go", encoding="utf-8")
            let_go = now()
            wait_ended(state, before + len(holders) + len(ids))
            streams_seen = seen.result()
        finally:
            stop.set()
            release.write_text("go", encoding="utf-8")
            thread.join()
    wait_ended(state, before + len(holders) + len(ids))  # the prober's last submit too
    drained = now() - let_go
    statuses = {s: finished(state, s) for s in (*FINAL, "queued", "running", "waiting")}
    return Load(len(ids), queued, submitted, burst.submit, drained, held, draining,
                streams_seen,
                {s: n for s, n in statuses.items() if n}, rss_samples)


def hold(client: Client, state: Path, workers: int) -> tuple[Path, list[str]]:
    """A run on each of the daemon's ``workers`` that waits until the file returned exists,
    started; their ids."""
    release = state.parent / f"release-{uuid.uuid4().hex[:8]}"
    started = [state.parent / f"{release.name}-holder-{n}" for n in range(workers)]
    holders = [client.submit(GATE.format(started=path, release=release)) for path in started]
    while not all(path.exists() for path in started):
        time.sleep(0.02)
    return release, holders


def ended(state: Path) -> int:
    """How many runs of the state dir have finished."""
    return sum(finished(state, status) for status in FINAL)


def wait_ended(state: Path, count: int) -> None:
    while ended(state) < count:
        time.sleep(0.05)


class ChildProcess:
    """``follow`` in a process of its own, started (and its imports done) before the load,
    so that following the streams does not slow the prober's calls."""

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
        self.pool.submit(os.getpid).result()

    def __call__(self, address: str, run_ids: Sequence[str]) -> Streams:
        return self.pool.submit(follow, address, list(run_ids)).result()

    def close(self) -> None:
        self.pool.shutdown()


# -- report --------------------------------------------------------------------------------

def figures(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"   {name:<9} no calls"
    ms = [s * 1e3 for s in seconds]
    return (f"   {name:<9} p50 {percentile(ms, 50):7.2f} ms   p99 {percentile(ms, 99):7.2f} ms"
            f"   max {max(ms):8.2f} ms   ({len(ms)} calls)")


def report(args: argparse.Namespace, quiet: Calls, done: Load, rss: tuple[int, int]) -> None:
    streams = done.streams
    print(f"1. idle: {args.samples} calls of each kind, one after another")
    for name, seconds in (("SubmitRun", quiet.submit), ("GetRun", quiet.getrun),
                          ("Check", quiet.check)):
        print(figures(name, seconds))
    print(f"2. {args.runs} runs submitted at once (16 at a time, every worker held) in "
          f"{done.submit_seconds:.2f} s:")
    print(figures("SubmitRun", done.submits))
    print(f"   then, {done.queued} runs queued (a {args.steps}-step no-op chain each) and "
          f"{streams.opened} WatchRun streams open on them, for {args.hold:g} s:")
    for name, seconds in (("SubmitRun", done.held.submit), ("GetRun", done.held.getrun),
                          ("Check", done.held.check)):
        print(figures(name, seconds))
    print(f"3. the workers let go: all {done.submitted} runs finished in "
          f"{done.drain_seconds:.2f} s ({done.submitted * args.steps / done.drain_seconds:.0f} "
          f"steps/s), the streams following them; meanwhile:")
    for name, seconds in (("SubmitRun", done.draining.submit), ("GetRun", done.draining.getrun),
                          ("Check", done.draining.check)):
        print(figures(name, seconds))
    checks = len(done.held.check) + len(done.draining.check)
    serving = checks - done.held.not_serving - done.draining.not_serving
    print(f"   health: {serving} of {checks} checks answered SERVING while loaded; calls "
          f"that failed: {done.held.errors or done.draining.errors or 'none'}")
    print(f"   streams: {streams.ended_after_finish} of {streams.opened} ended after "
          f"RunFinished, {streams.gap_free} with seqs 1..n without a gap, {streams.events} "
          f"events; errors: {streams.errors or 'none'}")
    live = streams.latencies
    if live:
        print(f"   event made -> client: p50 {percentile(live, 50) * 1e3:.2f} ms, p99 "
              f"{percentile(live, 99) * 1e3:.2f} ms ({len(live)} live events)")
    print(f"   runs at the end: {done.statuses}")
    peak = max(done.rss_kib, default=rss[0])
    print(f"4. the daemon's RSS: {rss[0] / 1024:.1f} MiB idle, {peak / 1024:.1f} MiB at its "
          f"peak while loaded, {rss[1] / 1024:.1f} MiB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--probe-ms", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=5.0,
                        help="seconds the runs stay queued, the streams open, before the "
                        "workers are let go")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="the daemon's --max-runs (default: its own default)")
    args = parser.parse_args()
    flags = f" --max-runs {args.max_runs}" if args.max_runs is not None else ""
    print(f"python bench/load.py --runs {args.runs} --streams {args.streams} --steps "
          f"{args.steps}{flags}")
    print(f"{sys.executable}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-load-") as tmp:
        state = Path(tmp) / "state"
        with daemon(state, args.max_runs, Path(tmp) / "daemon.log") as served:
            client, child = Client(served.address), ChildProcess()
            try:
                quiet = idle(client, state, args.samples, chain_spec(args.steps))
                before = served.rss_kib()
                done = load(client, served.address, state, runs=args.runs,
                            streams=args.streams, steps=args.steps,
                            workers=args.max_runs or DEFAULT_MAX_RUNS, hold_s=args.hold,
                            probe_s=args.probe_ms / 1e3, rss=served.rss_kib, follower=child)
                after = served.rss_kib()
                alive = client.serving()
            finally:
                child.close()
                client.close()
        report(args, quiet, done, (before, after))
        print(f"   after the load the daemon answered its health check "
              f"{'SERVING' if alive else 'NOT SERVING'}")


if __name__ == "__main__":
    main()
