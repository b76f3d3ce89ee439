"""Per-step host overhead: a 2,000-step chain of no-op async plugins.

Compares ``Engine.run`` (progress off) with a minimal reference loop doing the essential
work per step (resolve the input, validate it, await the plugin, validate and dump the
output, record it), in the same process. Also times planning (parse + static checks) at
several sizes to show it grows linearly, and a 1,000-step fan-out at --max-parallel 64.

    python bench/engine_overhead.py [--steps 2000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from _common import best_of, chain_spec, fanout_spec, now
from _common import reference_loop as common_reference_loop

from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import EventBus
from flowhost.spec_loading import parse_spec
from flowhost.static import check


def reference_loop(steps: int) -> float:
    """The reference loop, recording each step in a list."""
    records: list[dict[str, Any]] = []

    def record(step_id: str, outputs: dict[str, Any], duration: float) -> None:
        records.append({"id": step_id, "status": "success", "duration_s": duration})

    return common_reference_loop(steps, record)


def engine_run(text: str, max_parallel: int) -> float:
    plan = check(parse_spec(text), Catalog(), {})

    async def go() -> float:
        bus = EventBus()
        engine = Engine(plan, bus, env={}, max_parallel=max_parallel)
        start = now()
        status = await engine.run()
        elapsed = now() - start
        assert status == "success", status
        return elapsed

    return asyncio.run(go())


def planning(steps: int) -> float:
    text = chain_spec(steps)
    catalog = Catalog()
    catalog.get("noop")
    start = now()
    check(parse_spec(text), catalog, {})
    return now() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    n = args.steps
    chain = chain_spec(n)
    engine_run(chain, 8)  # warm up imports and caches
    reference_loop(10)

    # Alternate the two, so that a change in the machine's load hits both alike.
    refs: list[float] = []
    engs: list[float] = []
    for _ in range(args.repeats):
        refs.append(reference_loop(n))
        engs.append(engine_run(chain, 8))
    ref_best, ref_median = min(refs), statistics.median(refs)
    eng_best, eng_median = min(engs), statistics.median(engs)
    paired = statistics.median(e / r for e, r in zip(engs, refs, strict=True))
    print(f"chain of {n} no-op steps")
    print(f"  reference loop : best {ref_best * 1e3:8.1f} ms  ({ref_best / n * 1e6:6.1f} us/step)"
          f"  median {ref_median * 1e3:8.1f} ms")
    print(f"  flowhost engine: best {eng_best * 1e3:8.1f} ms  ({eng_best / n * 1e6:6.1f} us/step)"
          f"  median {eng_median * 1e3:8.1f} ms")
    print(f"  ratio engine/reference: best {eng_best / ref_best:.2f}x, "
          f"median {eng_median / ref_median:.2f}x, median of paired rounds {paired:.2f}x  "
          "(target <= 2x)")

    fan = fanout_spec(1000)
    fan_best, _ = best_of(args.repeats, lambda: engine_run(fan, 64))
    ref_1000, _ = best_of(args.repeats, lambda: reference_loop(1000))
    print("fan-out of 1000 independent no-op steps, --max-parallel 64")
    print(f"  flowhost engine: best {fan_best * 1e3:8.1f} ms  "
          f"({fan_best / 1000 * 1e6:6.1f} us/step)  "
          f"ratio to a 1000-step reference loop {fan_best / ref_1000:.2f}x")

    print("planning (parse + static checks) of a chain")
    base = None
    for size in (500, 1000, 2000, 4000):
        best, _ = best_of(3, lambda size=size: planning(size))
        base = base or best / size
        print(f"  {size:5d} steps: {best * 1e3:8.1f} ms  ({best / size * 1e6:6.1f} us/step, "
              f"{best / size / base:.2f}x the per-step cost at 500)")


if __name__ == "__main__":
    main()
