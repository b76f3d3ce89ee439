"""The daemon (``flowhost serve``), driven by a raw grpcio client: what its users wait for.

Each phase starts a fresh daemon (``--listen 127.0.0.1:0``, a new state dir) as a
subprocess, and stops it after:

1. SubmitRun latency at a steady ``--rate`` (default 50 submits/s) for ``--seconds``: each
   call sent on schedule (open loop: a slow answer does not delay the next call), a
   10-step no-op chain with its own request id; p50 and p99 (targets 5 ms and 25 ms). The
   runs execute meanwhile, as they would.
2. ``--runs`` (1,000) runs of the same chain submitted at once: steps per second from the
   first submit until every run finished, against ``flowhost run`` of the same steps in
   one process (one spec of ``--runs`` independent 10-step chains, ``--no-progress``, a
   fresh state dir, wall clock of the whole process); the ratio daemon/one process. While
   they run: GetRun p99 (a client asking about a random run every 20 ms; target 50 ms),
   and WatchRun's committed-event-to-client latency (streams opened on every 50th run
   before it starts: the time each event arrived less its ``at``, the moment it was made,
   which is before it was committed; p50, p99, target p99 50 ms).
3. RSS of the daemon process (``flowhost serve`` itself, not its workers) holding
   ``--runs`` waiting runs (one step each that needs a person): before and after, and per
   waiting run.

No assertions (machines are shared and noisy); phase 2 runs ``--rounds`` times (medians).

    python bench/daemon.py [--rounds 3] [--runs 1000] [--rate 50] [--seconds 10] [--max-runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from _common import now

from flowhost._proto import host_pb2 as pb
from flowhost._proto import host_pb2_grpc

READY = re.compile(r"^flowhost serve: listening on (?P<address>\S+)")
TARGETS_MS = {"submit p50": 5.0, "submit p99": 25.0, "getrun p99": 50.0, "watch p99": 50.0}
ASKS = ("workflow_id: asks\nsteps:\n  - {id: a, plugin: fail, inputs: {kind: intervention, "
        "message: needs a person}}\n")


def chain(steps: int, prefix: str = "s", indent: str = "  ") -> list[str]:
    lines = [f"{indent}- {{id: {prefix}0, plugin: noop, inputs: {{value: 0}}, cache: false}}"]
    lines += [f"{indent}- {{id: {prefix}{i}, plugin: noop, inputs: {{value: "
              f"${prefix}{i - 1}.value}}, cache: false}}" for i in range(1, steps)]
    return lines


def chain_spec(steps: int) -> str:
    return "\n".join(["workflow_id: bench-daemon", "steps:", *chain(steps)]) + "\n"


def chains_spec(chains: int, steps: int) -> str:
    """``chains`` independent chains of ``steps``: the daemon's runs as one workflow."""
    lines = ["workflow_id: bench-daemon-one-process", "steps:"]
    for c in range(chains):
        lines += chain(steps, prefix=f"c{c}s")
    return "\n".join(lines) + "\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    address: str
    channel: grpc.Channel = field(init=False)
    stub: Any = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.address)
        self.stub = host_pb2_grpc.HostServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the daemon and of each helper it runs, by kind."""
        found = {"daemon": _cpu_seconds(self.proc.pid), "checker": 0.0, "workers": 0.0}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.proc.pid:
                    continue
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            kind = "checker" if b"daemon.checker" in cmdline else "workers"
            found[kind] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def daemon(state: Path, max_runs: int | None, log: Path) -> Iterator[Daemon]:
    argv = [sys.executable, "-m", "flowhost", "serve", "--state-dir", str(state),
            "--listen", "127.0.0.1:0"]
    if max_runs is not None:
        argv += ["--max-runs", str(max_runs)]
    with log.open("ab") as err:
        proc = subprocess.Popen(argv, cwd=state.parent, stdout=subprocess.PIPE, stderr=err,
                                text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = READY.match(line)
        if found is None:
            raise SystemExit(f"the daemon did not start: {line!r}\n{log.read_text()[-2000:]}")
        served = Daemon(proc, found["address"])
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def submit(stub: Any, text: str) -> str:
    answer = stub.SubmitRun(pb.SubmitRunRequest(spec_yaml=text, spec_name="bench.yaml",
                                                request_id=uuid.uuid4().hex), timeout=60)
    return str(answer.run_id)


def finished(state: Path, status: str = "success") -> int:
    """How many runs have ``status``, read from the daemon's state database itself: asking
    the daemon (ListRuns pages of 1,000 runs, every half second) would load what the
    benchmark measures."""
    conn = sqlite3.connect(f"file:{state / 'state.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM runs WHERE status = ?",
                                (status,)).fetchone()[0])
    finally:
        conn.close()


# -- 1. SubmitRun at a steady rate ----------------------------------------------------------

def submit_latency(stub: Any, rate: float, seconds: float) -> list[float]:
    text = chain_spec(10)
    submit(stub, text)  # warm: the channel, the checker's imports
    count = int(rate * seconds)
    latencies: list[float] = []
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def call(index: int) -> None:
        sent = now()
        future = stub.SubmitRun.future(pb.SubmitRunRequest(
            spec_yaml=text, spec_name="bench.yaml", request_id=f"rate-{index}"), timeout=60)

        def answered(_: Any) -> None:
            with lock:
                latencies.append(now() - sent)
            done.release()

        future.add_done_callback(answered)

    start = now()
    for index in range(count):
        wait = start + index / rate - now()
        if wait > 0:
            time.sleep(wait)
        call(index)
    for _ in range(count):
        done.acquire(timeout=120)
    return latencies


# -- 2. many runs at once -----------------------------------------------------------------

@dataclass
class Burst:
    seconds: float
    getrun: list[float]
    watch: list[float]
    cpu: dict[str, float]  # CPU seconds while they ran: the daemon, the checker, workers


def burst(served: Daemon, state: Path, runs: int, steps: int) -> Burst:
    stub = served.stub
    text = chain_spec(steps)
    submit(stub, text)  # warm: a worker, the checker's imports
    while finished(state) < 1:
        time.sleep(0.05)
    cpu = served.cpu()
    ids: list[str] = []
    stop = threading.Event()
    getrun: list[float] = []
    watch: list[float] = []
    lock = threading.Lock()

    def ask() -> None:
        while not stop.is_set():
            if ids:
                run_id = random.choice(ids)
                sent = now()
                stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=60)
                getrun.append(now() - sent)
            time.sleep(0.02)

    def follow(run_id: str) -> None:
        opened = time.time()
        for event in stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=600):
            arrived = time.time()
            if event.at >= opened:  # live, not replayed
                with lock:
                    watch.append(arrived - event.at)

    asker = threading.Thread(target=ask, daemon=True)
    watchers: list[threading.Thread] = []
    start = now()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(submit, stub, text) for _ in range(runs)]
        for index, future in enumerate(futures):
            run_id = future.result()
            ids.append(run_id)
            if index == 0:
                asker.start()
            if index % 50 == 25:
                watcher = threading.Thread(target=follow, args=(run_id,), daemon=True)
                watcher.start()
                watchers.append(watcher)
    while finished(state) < runs + 1:
        time.sleep(0.1)
    seconds = now() - start
    used = {kind: spent - cpu.get(kind, 0.0) for kind, spent in served.cpu().items()}
    stop.set()
    asker.join()
    for watcher in watchers:
        watcher.join(timeout=60)
    return Burst(seconds, getrun, watch, used)


def one_process(root: Path, runs: int, steps: int) -> float:
    spec = root / "chains.yaml"
    spec.write_text(chains_spec(runs, steps), encoding="utf-8")
    state = root / f"one-process-{uuid.uuid4().hex[:6]}"
    start = now()
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", str(spec), "--no-progress",
                           "--state-dir", str(state)], cwd=root, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = now() - start
    if done.returncode != 0:
        raise SystemExit(f"flowhost run exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


# -- 3. memory of waiting runs --------------------------------------------------------------

def waiting_rss(served: Daemon, state: Path, runs: int) -> tuple[int, int]:
    stub = served.stub
    submit(stub, ASKS)
    while finished(state, "waiting") < 1:
        time.sleep(0.1)
    before = served.rss_kib()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: submit(stub, ASKS), range(runs)))
    while finished(state, "waiting") < runs + 1:
        time.sleep(0.1)
    # every run has been looked at since (ListRuns, GetRun): what the daemon holds for them
    for run_id in [r.run_id for r in stub.ListRuns(pb.ListRunsRequest(page_size=1000)).runs]:
        stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=60)
    return before, served.rss_kib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-runs", type=int, default=None,
                        help="the daemon's --max-runs (default: its own default)")
    args = parser.parse_args()
    flags = f" --max-runs {args.max_runs}" if args.max_runs is not None else ""
    print(f"python bench/daemon.py --rounds {args.rounds} --runs {args.runs} --rate "
          f"{args.rate:g} --seconds {args.seconds:g}{flags}")
    print(f"{sys.executable}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-daemon-") as tmp:
        root = Path(tmp)
        log = root / "daemon.log"

        with daemon(root / "rate", args.max_runs, log) as served:
            latencies = submit_latency(served.stub, args.rate, args.seconds)
        p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
        print(f"1. SubmitRun at {args.rate:g}/s for {args.seconds:g}s ({len(latencies)} calls, "
              f"a {10}-step chain each, executing meanwhile)")
        print(f"   p50 {p50:6.2f} ms (target <= {TARGETS_MS['submit p50']:g}: "
              f"{_verdict(p50, 'submit p50')})   p99 {p99:6.2f} ms (target <= "
              f"{TARGETS_MS['submit p99']:g}: {_verdict(p99, 'submit p99')})   max "
              f"{max(latencies) * 1e3:.1f} ms")

        bursts, singles = [], []
        one_process(root, 10, args.steps)  # warm: imports, stevedore's cache
        for index in range(args.rounds):
            state = root / f"burst-{index}"
            with daemon(state, args.max_runs, log) as served:
                bursts.append(burst(served, state, args.runs, args.steps))
            singles.append(one_process(root, args.runs, args.steps))
        steps = args.runs * args.steps
        daemon_s = statistics.median(b.seconds for b in bursts)
        single_s = statistics.median(singles)
        getrun = [x for b in bursts for x in b.getrun]
        watch = [x for b in bursts for x in b.watch]
        print(f"2. {args.runs} runs of a {args.steps}-step no-op chain submitted at once "
              f"(median of {args.rounds})")
        print(f"   daemon: all finished in {daemon_s:6.2f} s = {steps / daemon_s:8.0f} steps/s")
        print(f"   flowhost run of {args.runs} such chains in one process: {single_s:6.2f} s = "
              f"{steps / single_s:8.0f} steps/s")
        print(f"   ratio daemon/one process: {single_s / daemon_s:.2f}x the steps per second")
        cpu = {kind: statistics.median(b.cpu[kind] for b in bursts) / args.runs * 1e3
               for kind in bursts[0].cpu}
        print(f"   CPU per run meanwhile: daemon {cpu['daemon']:.2f} ms, checker "
              f"{cpu['checker']:.2f} ms, workers {cpu['workers']:.2f} ms (a {args.steps}-step "
              f"chain in one process: {single_s / args.runs * 1e3:.2f} ms, start-up included)")
        g99 = percentile(getrun, 99) * 1e3
        print(f"   GetRun while they run ({len(getrun)} calls): p50 "
              f"{percentile(getrun, 50) * 1e3:6.2f} ms, p99 {g99:6.2f} ms (target <= "
              f"{TARGETS_MS['getrun p99']:g}: {_verdict(g99, 'getrun p99')})")
        w99 = percentile(watch, 99) * 1e3
        print(f"   WatchRun event made -> client ({len(watch)} events): p50 "
              f"{percentile(watch, 50) * 1e3:6.2f} ms, p99 {w99:6.2f} ms (target <= "
              f"{TARGETS_MS['watch p99']:g}: {_verdict(w99, 'watch p99')})")

        with daemon(root / "waiting", args.max_runs, log) as served:
            before, after = waiting_rss(served, root / "waiting", args.runs)
        print(f"3. the daemon process holding {args.runs} waiting runs: RSS {before / 1024:.1f} "
              f"MiB with one, {after / 1024:.1f} MiB with {args.runs + 1}: "
              f"{(after - before) / args.runs:.1f} KiB per waiting run")


def _verdict(value_ms: float, target: str) -> str:
    return "ok" if value_ms <= TARGETS_MS[target] else "OVER"


if __name__ == "__main__":
    main()
