"""The daemon's reads on PostgreSQL under load: what a client of ``GetRun`` and ``ListRuns``
waits for while the daemon executes runs and streams them to watchers, with this tree's
flowhost against another commit's (``--baseline``, by default the one before the reads
went over an async pool: every read then waited its turn on the store's one thread).

Each round starts, for each of the two trees, a fresh database on one PostgreSQL server and
one ``flowhost serve --store URL --max-runs 4`` of that tree (``PYTHONPATH`` points at it;
its workers inherit it), submits ``--runs`` runs of a ``--steps``-step no-op chain, opens
``--streams`` WatchRun streams on them, and while they execute, ``--clients`` threads call
GetRun (a random run) and ListRuns (the first page) one after another for ``--seconds``.
Rounds alternate between the trees. Printed: calls per second and p50/p99 of each call for
each tree, and the ratios. No assertions (machines are shared and noisy).

    python bench/reads.py [--baseline REF] [--rounds 3] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from daemon import percentile
from replicas import chain, daemons, submit

from flowhost._proto import host_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres_server import running_server

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "d2bb32b~1"


@contextmanager
def tree(ref: str, root: Path) -> Iterator[Path]:
    """The ``host`` directory of a checkout of ``ref`` (a git worktree, removed after)."""
    where = root / f"tree-{uuid.uuid4().hex[:6]}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(where),
                    ref], check=True)
    try:
        yield where / "host"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                       check=False)


def watchers(address: str, run_ids: list[str]) -> None:
    """Follow each run to its end, in a process of its own (this one's threads would
    otherwise wait on the streams' decoding, and time it as the daemon's)."""
    import grpc

    from flowhost._proto import host_pb2_grpc

    stub = host_pb2_grpc.HostServiceStub(grpc.insecure_channel(address))  # type: ignore[no-untyped-call]

    def watch(run_id: str) -> None:
        for _ in stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=600):
            pass

    threads = [threading.Thread(target=watch, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def read_load(stub: Any, run_ids: list[str], clients: int, seconds: float
              ) -> dict[str, list[float]]:
    """Latencies of GetRun and ListRuns from ``clients`` threads for ``seconds``."""
    took: dict[str, list[float]] = {"GetRun": [], "ListRuns": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            name = "GetRun" if rng.random() < 0.7 else "ListRuns"
            start = time.perf_counter()
            if name == "GetRun":
                stub.GetRun(pb.GetRunRequest(run_id=rng.choice(run_ids)), timeout=60)
            else:
                stub.ListRuns(pb.ListRunsRequest(page_size=50), timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                took[name].append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return took


def one_round(host: Path, url: str, root: Path, args: argparse.Namespace
              ) -> dict[str, list[float]]:
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(host)  # the daemon and its workers run that tree
    try:
        with daemons(1, ["--store", url], root, 4) as started:
            stub = started[0][1]
            text = chain(args.steps)
            run_ids = [submit(stub, text)[0] for _ in range(args.runs)]
            following = multiprocessing.get_context("spawn").Process(
                target=watchers, args=(started[0][2], run_ids[:args.streams]), daemon=True)
            following.start()
            took = read_load(stub, run_ids, args.clients, args.seconds)
            following.kill()
            following.join()
            return took
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-reads-") as tmp, \
            running_server() as server, tree(args.baseline, Path(tmp)) as old:
        root = Path(tmp)
        trees = {"this tree": ROOT / "host", f"baseline {args.baseline}": old}
        found: dict[str, dict[str, list[float]]] = {
            name: {"GetRun": [], "ListRuns": [], "rate": []} for name in trees}
        for _ in range(args.rounds):
            for name, host in trees.items():
                took = one_round(host, server.create_database(), root, args)
                for call, values in took.items():
                    found[name][call] += values
                found[name]["rate"].append(sum(map(len, took.values())) / args.seconds)
    print(f"python bench/reads.py --baseline {args.baseline} --rounds {args.rounds} "
          f"--runs {args.runs} --steps {args.steps} --streams {args.streams} "
          f"--clients {args.clients} --seconds {args.seconds:g}")
    print(f"  {'':<24} {'calls/s':>8} {'GetRun p50':>11} {'p99':>8} {'ListRuns p50':>13} "
          f"{'p99':>8}")
    for name, got in found.items():
        print(f"  {name:<24} {statistics.median(got['rate']):8.0f} "
              f"{statistics.median(got['GetRun']) * 1e3:9.1f}ms "
              f"{percentile(got['GetRun'], 99) * 1e3:6.1f}ms "
              f"{statistics.median(got['ListRuns']) * 1e3:11.1f}ms "
              f"{percentile(got['ListRuns'], 99) * 1e3:6.1f}ms")
    new, base = found.values()
    print(f"  calls/s this tree / baseline: "
          f"{statistics.median(new['rate']) / statistics.median(base['rate']):.2f}x")


if __name__ == "__main__":
    main()
