"""Per-step cost of durable runs: the 2,000-step chain of no-op steps with the state store on.

Compares ``Engine.run`` with the store listener and the step cache (as ``flowhost run`` runs
by default: a checkpoint committed after every step, the cache filled) with a minimal
reference loop that does the essential work of a step (that of ``engine_overhead.py``'s) and
commits one SQLite row per step (WAL, ``synchronous=NORMAL``): the step's id, status,
duration and outputs as JSON, a row it could be resumed from. Same process, a fresh
database for each run. The engine without the store is shown for scale.

    python bench/store_overhead.py [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from _common import best_of, chain_spec, durable_reference_loop, now

from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import EventBus
from flowhost.plan import Plan
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost.store import Store, StoreCache, StoreListener


def reference_loop(steps: int) -> float:
    """The reference loop, committing one row per step (WAL, synchronous=NORMAL)."""
    database = Path(tempfile.mkdtemp(prefix="flowhost-bench-")) / "ref.db"
    return durable_reference_loop(steps, database)


def engine_run(plan: Plan, *, store_on: bool, cache: bool = True) -> float:
    store = record = None
    if store_on:
        store = Store.open(tempfile.mkdtemp(prefix="flowhost-bench-"))
        record = store.create_run(run_id="bench", workflow_id=plan.workflow.workflow_id,
                                  spec_text="", spec_path="", spec_redacted=False,
                                  overrides=[], cwd=".", total_steps=len(plan.steps))

    async def go() -> float:
        bus = EventBus(keep_history=False)
        step_cache = None
        listener = None
        if store is not None and record is not None:
            step_cache = StoreCache(store) if cache else None
            listener = StoreListener(store, record, cache=step_cache)
            bus.subscribe(listener)
        engine = Engine(plan, bus, env={}, max_parallel=8, cache=step_cache)
        start = now()
        status = await engine.run()
        if listener is not None:
            listener.close()  # the last batch of cache entries and durations
        elapsed = now() - start
        assert status == "success", status
        assert listener is None or listener.failure is None, listener.failure
        return elapsed

    try:
        return asyncio.run(go())
    finally:
        if store is not None:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.steps
    plan = check(parse_spec(chain_spec(n)), Catalog(), {})
    engine_run(plan, store_on=True)  # warm up imports and caches
    reference_loop(10)

    ref_best, ref_median = best_of(args.repeats, lambda: reference_loop(n))
    bare_best, _ = best_of(args.repeats, lambda: engine_run(plan, store_on=False))
    on_best, on_median = best_of(args.repeats, lambda: engine_run(plan, store_on=True))
    nocache_best, _ = best_of(args.repeats,
                              lambda: engine_run(plan, store_on=True, cache=False))

    def line(label: str, best: float, median: float | None = None) -> str:
        text = f"  {label:<34}: best {best * 1e3:8.1f} ms  ({best / n * 1e6:6.1f} us/step)"
        return text + (f"  median {median * 1e3:8.1f} ms" if median is not None else "")

    print(f"chain of {n} no-op steps, a fresh state database each run")
    print(line("reference loop + 1 commit/step", ref_best, ref_median))
    print(line("engine, store off", bare_best))
    print(line("engine, store on (cache on)", on_best, on_median))
    print(line("engine, store on, --no-cache", nocache_best))
    print(f"  ratio store-on/reference: best {on_best / ref_best:.2f}x, "
          f"median {on_median / ref_median:.2f}x  (target <= 2x); "
          f"with --no-cache {nocache_best / ref_best:.2f}x")


if __name__ == "__main__":
    main()
