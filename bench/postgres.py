"""A whole ``flowhost run`` on PostgreSQL against the same on SQLite: wall clock per step.

Times ``flowhost run CHAIN --no-progress`` (a new subprocess each time, stdout to
/dev/null) of a chain of N no-op steps (``cache: false``) at N=200 and N=1000, with
``--state-dir <new dir>`` (SQLite, WAL, ``synchronous=NORMAL``) and with ``--store
postgresql://…/<new database>`` on a PostgreSQL started here on loopback (Debian's
``postgresql``, as the tests start it, ``tests/postgres_server.py``) with its durable
defaults (``fsync=on``, ``synchronous_commit=on``: each step's commit is flushed to disk
before the next step starts; SQLite's NORMAL flushes only at checkpoints). The per-step
cost is the slope (t1000 - t200) / 800, so start-up, imports and a run's fixed cost cancel
out. Rounds are interleaved; medians are reported. No assertions (machines are shared).

With ``--pgbouncer``, also ``--store postgresql://…?pooler=transaction`` through Debian's
PgBouncer in transaction mode in front of the same server (``tests/postgres_server.py``):
what a pooler costs a run (no session state: each checkpoint is a transaction that sets its
lock timeout).

With ``--dbos PYTHON`` (a Python with ``pip install dbos``, kept out of flowhost's venv),
the same chain as a DBOS Transact workflow of N ``@DBOS.step`` no-ops, each taking the
previous one's result (DBOS checkpoints every step into PostgreSQL), whole processes on a
fresh database of the same server: the closest peer, side by side.

    python bench/postgres.py [--rounds 5] [--small 200] [--large 1000] [--no-fsync]
                             [--pgbouncer] [--dbos /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import chain_spec
from whole_run import Fresh, flowhost_run, wall

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# The chain as a DBOS workflow: argv is the database URL and the number of steps.
DBOS_CHAIN = """
import sys
from dbos import DBOS
DBOS(config={"name": "bench-chain", "system_database_url": sys.argv[1]})

@DBOS.step()
def noop(value: int) -> int:
    return value + 1

@DBOS.workflow()
def chain(steps: int) -> int:
    value = 0
    for _ in range(steps):
        value = noop(value)
    return value

DBOS.launch()
assert chain(int(sys.argv[2])) == int(sys.argv[2])
DBOS.destroy()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--no-fsync", action="store_true",
                        help="PostgreSQL with fsync=off (commits not flushed to disk)")
    parser.add_argument("--pgbouncer", action="store_true",
                        help="also through PgBouncer in transaction mode")
    parser.add_argument("--dbos", metavar="PYTHON", default=None,
                        help="a Python that has dbos installed: time DBOS on the same chain")
    args = parser.parse_args()
    from postgres_server import PgBouncer, pg_bin_dir, pgbouncer_binary, running_server

    if pg_bin_dir() is None:
        raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql")
    if args.pgbouncer and not pgbouncer_binary():
        raise SystemExit("no pgbouncer: apt-get install pgbouncer")
    small, large = args.small, args.large
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-pg-") as tmp, \
            running_server(durable=not args.no_fsync) as server:
        root = Path(tmp)
        pooler = PgBouncer(server, server.base / "pgbouncer")
        if args.pgbouncer:
            pooler.start()
        work = root / "work"
        work.mkdir()
        fresh = Fresh(root)
        specs = {n: work / f"chain{n}.yaml" for n in (small, large)}
        for n, path in specs.items():
            path.write_text(chain_spec(n, cache=False), encoding="utf-8")

        def on_sqlite(n: int) -> Callable[[], float]:
            return lambda: wall([*flowhost_run(specs[n]), "--state-dir",
                                 str(fresh("state"))], work)

        def on_postgres(n: int) -> Callable[[], float]:
            def measure() -> float:
                url = server.create_database()  # (not timed: before the process starts)
                return wall([*flowhost_run(specs[n]), "--store", url], work)
            return measure

        def through_pgbouncer(n: int) -> Callable[[], float]:
            def measure() -> float:
                url = pooler.url(server.create_database())
                return wall([*flowhost_run(specs[n]), "--store", url], work)
            return measure

        def on_dbos(n: int) -> Callable[[], float]:
            def measure() -> float:
                url = server.create_database()
                return wall([args.dbos, "-c", DBOS_CHAIN, url, str(n)], work)
            return measure

        measures = {f"sqlite {small}": on_sqlite(small), f"sqlite {large}": on_sqlite(large),
                    f"postgresql {small}": on_postgres(small),
                    f"postgresql {large}": on_postgres(large)}
        if args.pgbouncer:
            measures |= {f"pgbouncer {small}": through_pgbouncer(small),
                         f"pgbouncer {large}": through_pgbouncer(large)}
        if args.dbos:
            measures |= {f"dbos {small}": on_dbos(small), f"dbos {large}": on_dbos(large)}
        kinds = ("sqlite", "postgresql", *(("pgbouncer",) if args.pgbouncer else ()),
                 *(("dbos",) if args.dbos else ()))
        try:
            for measure in measures.values():  # warm up caches (and the migrations)
                measure()
            times: dict[str, list[float]] = {name: [] for name in measures}
            for _ in range(args.rounds):
                for name, measure in measures.items():
                    times[name].append(measure())
        finally:
            pooler.stop()

    report(args, kinds, times)


def report(args: argparse.Namespace, kinds: tuple[str, ...],
           times: dict[str, list[float]]) -> None:
    small, large = args.small, args.large
    median = {name: statistics.median(values) for name, values in times.items()}
    span = large - small
    slope = {kind: (median[f"{kind} {large}"] - median[f"{kind} {small}"]) / span
             for kind in kinds}
    fsync = "fsync=off" if args.no_fsync else "fsync=on, synchronous_commit=on"
    print(f"python bench/postgres.py --rounds {args.rounds} --small {small} --large {large}"
          + (" --no-fsync" if args.no_fsync else "")
          + (" --pgbouncer" if args.pgbouncer else "") + (" --dbos PYTHON" if args.dbos else ""))
    print(f"whole `flowhost run` processes, {args.rounds} interleaved rounds (medians), "
          f"chain of no-op steps, cache: false; PostgreSQL on 127.0.0.1 ({fsync})")
    print(f"  {'':<32} {'N=' + str(small):>10} {'N=' + str(large):>10} {'per step':>10}")
    labels = {"sqlite": "flowhost --state-dir (SQLite)",
              "postgresql": "flowhost --store postgresql://",
              "pgbouncer": "  the same through PgBouncer", "dbos": "DBOS Transact workflow"}
    for kind, label in ((kind, labels[kind]) for kind in kinds):
        print(f"  {label:<32} {median[f'{kind} {small}'] * 1e3:8.1f}ms "
              f"{median[f'{kind} {large}'] * 1e3:8.1f}ms {slope[kind] * 1e6:8.1f}us")
    print(f"  PostgreSQL / SQLite per step: {slope['postgresql'] / slope['sqlite']:.2f}x")
    if args.pgbouncer:
        print(f"  through PgBouncer / direct per step: "
              f"{slope['pgbouncer'] / slope['postgresql']:.2f}x")
    if args.dbos:
        print(f"  flowhost on PostgreSQL / DBOS per step: "
              f"{slope['postgresql'] / slope['dbos']:.2f}x (target <= 1)")


if __name__ == "__main__":
    main()
