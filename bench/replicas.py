"""Several daemons on one PostgreSQL (issue 15): throughput of 1, 2 and 3 replicas against
one daemon on SQLite, the claim latency reached, and how long a replica's death takes to be
taken over.

1. Throughput: R runs of a chain of S no-op steps, submitted at once (spread round-robin
   over the replicas' APIs), each daemon with ``--max-runs M``; steps per second from the
   first submission to the last run's end. The same workload on one daemon with
   ``--state-dir`` (SQLite) is the baseline, measured in the same process of this script.
2. Claim latency: for each run of (1), from its SubmitRun's answer to its ``RunStarted``
   being committed (a daemon claimed it, a worker started it): p50/p99/max. This is at the
   rate the replicas sustain: every run is queued at once.
3. Takeover: two replicas; a run whose step sleeps is started, the daemon executing it is
   killed with SIGKILL (its workers die with it), and the time until the other replica has
   committed the run's next ``RunStarted`` is measured: p50/p99 over K kills.

PostgreSQL is started here on loopback as the tests start it (``tests/postgres_server.py``),
with its durable defaults unless ``--no-fsync``. With ``--pgbouncer``, also 3 daemons and
the takeover through Debian's PgBouncer in transaction mode (``?pooler=transaction``: a dead
replica is known only when its leases run out, 30 s). No assertions (machines are shared).

    python bench/replicas.py [--runs 200] [--steps 10] [--max-runs 4] [--kills 5] [--no-fsync]
                             [--pgbouncer]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from daemon import READY, percentile

from flowhost._proto import host_pb2 as pb
from flowhost._proto import host_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres_server import PgBouncer, running_server

SLEEPY = "workflow_id: sleepy\nsteps:\n  - {id: nap, plugin: sleeper, inputs: {seconds: 30}}\n"


def chain(steps: int) -> str:
    lines = ["workflow_id: replicas", "steps:", "  - {id: s0, plugin: noop, inputs: {value: 0}}"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: $s{i - 1}.value}}}}"
              for i in range(1, steps)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def daemons(count: int, store: list[str], root: Path, max_runs: int
            ) -> Iterator[list[tuple[subprocess.Popen[str], Any, str]]]:
    """``count`` daemons on ``store`` (``--store URL`` or ``--state-dir D``), each with a
    state dir of its own for the runs' working directories; stopped afterwards. Each is
    (process, HostService stub, address)."""
    started: list[tuple[subprocess.Popen[str], Any, str]] = []
    try:
        for index in range(count):
            state = root / f"daemon-{index}-{uuid.uuid4().hex[:6]}"
            state.mkdir()
            log = (root / f"{state.name}.log").open("ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "flowhost", "serve", *store, "--listen", "127.0.0.1:0",
                 "--metrics-listen", "127.0.0.1:0", "--max-runs", str(max_runs)],
                cwd=state, stdout=subprocess.PIPE, stderr=log, text=True,
                env={**os.environ, "FLOWHOST_STATE_DIR": str(state)})
            assert proc.stdout is not None
            found = READY.match(proc.stdout.readline())
            if found is None:
                raise SystemExit(f"a daemon did not start; see {log.name}")
            channel = grpc.insecure_channel(found["address"])
            stub = host_pb2_grpc.HostServiceStub(channel)  # type: ignore[no-untyped-call]
            started.append((proc, stub, found["address"]))
        yield started
    finally:
        for proc, *_ in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def submit(stub: Any, text: str) -> tuple[str, float]:
    answer = stub.SubmitRun(pb.SubmitRunRequest(spec_yaml=text, spec_name="bench.yaml",
                                                request_id=uuid.uuid4().hex), timeout=60)
    return str(answer.run_id), time.time()


def wait_all(stub: Any, run_ids: list[str], timeout: float = 900) -> dict[str, float]:
    """When each run's RunStarted was committed, once every run has finished (GetRun)."""
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            answer = stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=60)
            status = json.loads(answer.result_json)["status"]
            if status in ("success", "failed", "aborted", "cancelled"):
                pending.discard(run_id)
        if pending:
            time.sleep(0.2)
    if pending:
        raise SystemExit(f"{len(pending)} runs did not finish")
    return {run_id: started_at(stub, run_id) for run_id in run_ids}


def started_at(stub: Any, run_id: str, nth: int = 1) -> float:
    """The ts of the run's ``nth`` RunStarted (WatchRun replays the journal, then follows)."""
    seen = 0
    call = stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=120)
    try:
        for update in call:
            if update.type == "RunStarted":
                seen += 1
                if seen == nth:
                    return float(json.loads(update.event_json)["ts"])
    finally:
        call.cancel()
    return float("nan")


def throughput(count: int, store: list[str], root: Path, runs: int, steps: int,
               max_runs: int) -> tuple[float, list[float]]:
    text = chain(steps)
    with daemons(count, store, root, max_runs) as served:
        stubs = [stub for _, stub, _ in served]
        begin = time.time()
        submitted = [submit(stubs[i % len(stubs)], text) for i in range(runs)]
        starts = wait_all(stubs[0], [run_id for run_id, _ in submitted])
        elapsed = time.time() - begin
    claims = [starts[run_id] - at for run_id, at in submitted]
    return runs * steps / elapsed, claims


def takeover(new_database: Callable[[], str], root: Path, kills: int,
             through: Callable[[str], str] = str) -> list[float]:
    """A database per kill: the runs of an earlier kill, still sleeping, would take the
    survivor's slots and the measure would be the wait for a free slot. ``through``: the
    URL the daemons are given for a database's (a pooler's)."""
    times: list[float] = []
    for _ in range(kills):
        url = new_database()
        with daemons(2, ["--store", through(url)], root, 2) as served:
            run_id, _ = submit(served[0][1], SLEEPY)
            started_at(served[0][1], run_id)  # it runs (on either daemon)
            owner = _executing(url, run_id, [proc for proc, *_ in served])
            killed = time.time()
            owner.send_signal(signal.SIGKILL)
            survivor = next(stub for proc, stub, _ in served if proc is not owner)
            again = started_at(survivor, run_id, nth=2)
            if not math.isnan(again):
                times.append(again - killed)
    return times


def _executing(url: str, run_id: str, procs: list[subprocess.Popen[str]]
               ) -> subprocess.Popen[str]:
    """The daemon one of whose workers holds the run's lease ("host:pid")."""
    import psycopg

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT owner FROM leases JOIN runs USING (run_no) "
                               "WHERE run_id = %s", (run_id,)).fetchone()
        if row is not None:
            worker = int(str(row[0]).rsplit(":", 1)[1])
            parent = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
            for proc in procs:
                if proc.pid in (parent, worker):
                    return proc
        time.sleep(0.1)
    raise SystemExit(f"no daemon holds run {run_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-runs", type=int, default=4)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--no-fsync", action="store_true")
    parser.add_argument("--pgbouncer", action="store_true",
                        help="also through PgBouncer in transaction mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-replicas-") as tmp, \
            running_server(durable=not args.no_fsync) as server:
        root = Path(tmp)
        base = root / "sqlite"
        base.mkdir()
        results = {"1 daemon, SQLite": throughput(1, ["--state-dir", str(base / "state")],
                                                  root, args.runs, args.steps, args.max_runs)}
        for count in (1, 2, 3):
            url = server.create_database()
            results[f"{count} daemon{'s' if count > 1 else ''}, PostgreSQL"] = throughput(
                count, ["--store", url], root, args.runs, args.steps, args.max_runs)
        took = {"direct": takeover(server.create_database, root, args.kills)}
        if args.pgbouncer:
            pooler = PgBouncer(server, server.base / "pgbouncer")
            pooler.start()
            try:
                results["3 daemons, PgBouncer"] = throughput(
                    3, ["--store", pooler.url(server.create_database())], root, args.runs,
                    args.steps, args.max_runs)
                took["through PgBouncer"] = takeover(server.create_database, root,
                                                     min(args.kills, 3), pooler.url)
            finally:
                pooler.stop()
    report(args, results, took)


def report(args: argparse.Namespace, results: dict[str, tuple[float, list[float]]],
           took: dict[str, list[float]]) -> None:
    fsync = "off" if args.no_fsync else "on"
    print(f"python bench/replicas.py --runs {args.runs} --steps {args.steps} --max-runs "
          f"{args.max_runs} --kills {args.kills}{' --no-fsync' if args.no_fsync else ''}"
          f"{' --pgbouncer' if args.pgbouncer else ''}")
    print(f"{args.runs} runs x {args.steps} no-op steps, submitted at once; PostgreSQL fsync "
          f"{fsync}; each daemon --max-runs {args.max_runs}")
    baseline = results["1 daemon, SQLite"][0]
    print(f"  {'':<24} {'steps/s':>9} {'vs SQLite':>10} {'claim p50':>10} {'p99':>8} "
          f"{'max':>8}")
    for name, (rate, claims) in results.items():
        print(f"  {name:<24} {rate:9.0f} {rate / baseline:9.2f}x "
              f"{statistics.median(claims) * 1e3:8.0f}ms {percentile(claims, 99) * 1e3:6.0f}ms "
              f"{max(claims) * 1e3:6.0f}ms")
    for how, times in took.items():
        if times:
            print(f"takeover after SIGKILL of the executing daemon, {how} ({len(times)} "
                  f"kills): p50 {statistics.median(times):.2f}s, p99 "
                  f"{percentile(times, 99):.2f}s, max {max(times):.2f}s")

if __name__ == "__main__":
    main()
