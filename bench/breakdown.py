"""Where a step of a whole ``flowhost run`` goes: planning, the checkpoint's write (the
step log), the journal's own Python (its batches into SQLite among it), the progress
lines, and the engine with the plugin call.

Each measurement is a ``flowhost run CHAIN --no-progress`` process (the CLI's ``main`` as
the ``flowhost`` process runs it, output to /dev/null) of a chain of N no-op steps that
times, inside itself, ``check_spec`` (planning) and ``Engine.run`` (execution). The
variants leave one part out by patching it in that process only: the checkpoint not
written to the step log (its rows still encoded and moved into SQLite), the journal not
written at all, no progress lines.
The per-step cost of each is the slope between N=2000 and N=8000; the medians of the
rounds are reported, and each part is the difference of two variants. A diagnosis, not a
benchmark: what is left out here is never left out by flowhost.

    python bench/breakdown.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import chain_spec

SMALL, LARGE = 2000, 8000
VARIANTS = ("whole", "no-checkpoint-write", "no-journal", "no-progress-lines")


def child(steps: int, variant: str, spec: str, state: str) -> None:
    """One run, in this process; prints the seconds of planning and of execution."""
    from flowhost import api, engine
    from flowhost.progress import PlainProgress
    from flowhost.store.listener import StoreListener

    spent: dict[str, float] = {}
    check_spec, run = api.check_spec, engine.Engine.run

    def timed_check(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return check_spec(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            spent["planning"] = time.perf_counter() - start

    async def timed_run(self: engine.Engine) -> object:
        start = time.perf_counter()
        try:
            return await run(self)
        finally:
            spent["execution"] = time.perf_counter() - start

    api.check_spec = timed_check  # type: ignore[assignment]
    engine.Engine.run = timed_run  # type: ignore[method-assign,assignment]
    if variant == "no-checkpoint-write":
        from flowhost.store.steplog import StepLog

        StepLog.append = lambda self, rows: None  # type: ignore[method-assign]
    elif variant == "no-journal":
        StoreListener.__call__ = lambda self, event: None  # type: ignore[method-assign]
    elif variant == "no-progress-lines":
        PlainProgress.__call__ = lambda self, event: None  # type: ignore[method-assign]
    from flowhost.cli import main

    sys.argv = ["flowhost", "run", spec, "--no-progress", "--state-dir", state]
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        code = main()
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    if code != 0:
        raise SystemExit(f"flowhost run {spec} exited {code}")
    print(spent["planning"], spent["execution"])


def measure(variant: str, steps: int, work: Path, count: list[int]) -> tuple[float, float]:
    count[0] += 1
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(steps), variant,
         str(work / f"chain{steps}.yaml"), str(work / f"state-{count[0]}")],
        cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    planning, execution = (float(x) for x in done.stdout.split())
    return planning, execution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=4, metavar=("N", "VARIANT", "SPEC", "STATE"))
    args = parser.parse_args()
    if args.child:
        steps, variant, spec, state = args.child
        child(int(steps), variant, spec, state)
        return
    slopes: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-breakdown-") as tmp:
        work, count = Path(tmp), [0]
        for n in (SMALL, LARGE):
            (work / f"chain{n}.yaml").write_text(chain_spec(n, cache=False), encoding="utf-8")
        for _ in range(args.rounds):
            for variant in VARIANTS:
                small = measure(variant, SMALL, work, count)
                large = measure(variant, LARGE, work, count)
                slopes[variant].append(((large[0] - small[0]) / (LARGE - SMALL),
                                        (large[1] - small[1]) / (LARGE - SMALL)))
    median = {v: (statistics.median(p for p, _ in s) * 1e6, statistics.median(e for _, e in s)
                  * 1e6) for v, s in slopes.items()}
    whole = median["whole"]
    written = whole[1] - median["no-checkpoint-write"][1]
    journal = median["no-checkpoint-write"][1] - median["no-journal"][1]
    progress = whole[1] - median["no-progress-lines"][1]
    rows = [("planning (check_spec)", whole[0]), ("execution (Engine.run)", whole[1]),
            ("  the checkpoint's write (step log)", written),
            ("  the journal's Python (rows, batches)", journal),
            ("  the progress lines", progress),
            ("  the engine, the plugin call, the rest", whole[1] - written - journal - progress)]
    print(f"python bench/breakdown.py --rounds {args.rounds}: us a step of a no-op chain "
          f"(slope {SMALL} -> {LARGE} steps, medians), {sys.executable}")
    for label, value in rows:
        print(f"  {label:<42} {value:6.1f}")

if __name__ == "__main__":
    main()
