"""What the recovery ladder costs a step that succeeds the first time: nothing measurable.

Runs the 2,000-step no-op chain with and without a retry policy and a fallback declared on
every step, interleaved in the same process, and prints the ratio (target: within 5%).

    python bench/ladder_overhead.py [--steps 2000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics

from _common import chain_spec, chain_with_ladder_spec
from engine_overhead import engine_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    plain, laddered = chain_spec(args.steps), chain_with_ladder_spec(args.steps)
    engine_run(plain, 8)
    engine_run(laddered, 8)
    bare: list[float] = []
    ladder: list[float] = []
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both
        bare.append(engine_run(plain, 8))
        ladder.append(engine_run(laddered, 8))
    for name, times in (("no ladder declared", bare), ("retry + fallback on every step", ladder)):
        print(f"  {name:32s}: best {min(times) * 1e3:7.1f} ms  "
              f"median {statistics.median(times) * 1e3:7.1f} ms")
    print(f"chain of {args.steps} steps, ratio ladder/none: best {min(ladder) / min(bare):.3f}x, "
          f"median {statistics.median(ladder) / statistics.median(bare):.3f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
