"""What the user waits for: whole ``flowhost run`` processes, wall clock.

Times ``flowhost run CHAIN --no-progress --state-dir FRESH`` (a new subprocess each time,
stdout to /dev/null) of a chain of N no-op async steps (plugin ``noop``, each reading the
previous step's ``$s{i-1}.value``, ``cache: false``) at N=500 and N=2000; the per-step cost
is the slope (t2000 - t500) / 1500, so the interpreter's start-up, the imports and the fixed
cost of a run cancel out. In the same rounds it times a durable reference loop the same
way: one Python process per run that, per step, resolves the input from the previous
output, awaits the async no-op, validates its pydantic models and commits one SQLite row
(WAL, ``synchronous=NORMAL``) — ``_common.durable_reference_loop``. Every measurement is
interleaved with the others (round after round), and medians are reported.

Each process's CPU time (user + system, from ``getrusage``) is reported beside its wall
time: it leaves out the time spent waiting for a core, most of the noise on a shared machine.

Also: a one-step workflow as a whole process beside ``python -c pass`` and
``python -c "import flowhost.api"``, and planning (parse + every static check, in this
process, ``flowhost.api.check_spec``) in microseconds per step at 500 and 4,000 steps.
Targets: per-step slope <= 2x the reference's; one-step run <= 300 ms; planning linear.
No assertions (machines are shared and noisy).

    python bench/whole_run.py [--rounds 7] [--small 500] [--large 2000]
"""

from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import chain_spec, now

BENCH = Path(__file__).resolve().parent
SLOPE_TARGET = 2.0
ONE_STEP_TARGET_MS = 300.0


def wall(argv: list[str], cwd: Path) -> float:
    """Seconds one process takes, start to exit; fails loudly on a non-zero exit."""
    return timed(argv, cwd)[0]


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process: its CPU time (user + system) does not
    count the time it waited for a core, which on a shared machine is most of the noise."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = now()
    done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = now() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {done.returncode}:\n"
                         f"{done.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


class Fresh:
    """A new directory under ``root`` for each call: a state dir, a reference database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def __call__(self, name: str) -> Path:
        self.count += 1
        return self.root / f"{name}-{self.count}"


def flowhost_run(spec: Path) -> list[str]:
    return [sys.executable, "-m", "flowhost", "run", str(spec), "--no-progress"]


def reference_run(steps: int, database: Path) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); "
            "from _common import durable_reference_loop; "
            f"durable_reference_loop({steps}, {str(database)!r})")
    return [sys.executable, "-c", code]


def planning(text: str, work: Path) -> float:
    """Seconds ``check_spec`` takes for ``text`` (parse + every static check)."""
    from flowhost.api import check_spec
    from flowhost.context import make_context

    ctx = make_context(workdir=work)
    start = now()
    check_spec(text, ctx, spec_name="chain.yaml")
    return now() - start


Times = dict[str, list[float]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2000)
    args = parser.parse_args()
    small, large = args.small, args.large
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-whole-") as tmp:
        root = Path(tmp)
        work = root / "work"  # no flowhost.toml here
        work.mkdir()
        fresh = Fresh(root)
        specs = {n: work / f"chain{n}.yaml" for n in (1, small, large)}
        for n, path in specs.items():
            path.write_text(chain_spec(n, cache=False), encoding="utf-8")

        def run_flowhost(n: int) -> Callable[[], tuple[float, float]]:
            return lambda: timed([*flowhost_run(specs[n]), "--state-dir",
                                  str(fresh("state"))], work)

        def run_reference(n: int) -> Callable[[], tuple[float, float]]:
            return lambda: timed(reference_run(n, fresh("ref").with_suffix(".db")), work)

        measures: dict[str, Callable[[], tuple[float, float]]] = {
            f"flowhost {small}": run_flowhost(small),
            f"flowhost {large}": run_flowhost(large),
            f"reference {small}": run_reference(small),
            f"reference {large}": run_reference(large),
            "flowhost 1": run_flowhost(1),
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], work),
            'python -c "import flowhost.api"': lambda: timed(
                [sys.executable, "-c", "import flowhost.api"], work),
        }
        for measure in measures.values():  # warm up: stevedore's cache, the disk's caches
            measure()
        times: Times = {name: [] for name in measures}
        cpu: Times = {name: [] for name in measures}
        for _ in range(args.rounds):
            for name, measure in measures.items():
                elapsed, used = measure()
                times[name].append(elapsed)
                cpu[name].append(used)

        planning(chain_spec(10), work)  # warm up imports and the plugin
        plan = {n: min(planning(chain_spec(n), work) for _ in range(3)) for n in (small, 4000)}
    report(args.rounds, small, large, times, cpu, plan)


def slopes(times: Times, small: int, large: int) -> tuple[float, float, float]:
    """Per-step slopes of flowhost and the reference (of the medians), and the median of
    the rounds' own ratios (each round's slopes paired)."""
    median = {name: statistics.median(values) for name, values in times.items()}
    span = large - small
    per_step = (median[f"flowhost {large}"] - median[f"flowhost {small}"]) / span
    ref_step = (median[f"reference {large}"] - median[f"reference {small}"]) / span
    paired = statistics.median(
        (fl - fs) / (rl - rs) for fs, fl, rs, rl in zip(
            times[f"flowhost {small}"], times[f"flowhost {large}"],
            times[f"reference {small}"], times[f"reference {large}"], strict=True)
        if rl > rs)
    return per_step, ref_step, paired


def report(rounds: int, small: int, large: int, times: Times, cpu: Times,
           plan: dict[int, float]) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    per_step, ref_step, paired = slopes(times, small, large)
    print(f"python bench/whole_run.py --rounds {rounds} --small {small} --large {large}")
    print(f"whole processes, {rounds} interleaved rounds (medians), {sys.executable}")
    print("  flowhost: python -m flowhost run chain<N>.yaml --no-progress --state-dir <new> "
          "> /dev/null   (cache: false)")
    print("  reference: python -c 'from _common import durable_reference_loop; "
          "durable_reference_loop(N, <new>.db)'")
    print(f"  {'':<34} {'N=' + str(small):>10} {'N=' + str(large):>10} {'per step':>10}")
    for label, key, slope in (("flowhost run", "flowhost", per_step),
                              ("reference loop + 1 commit/step", "reference", ref_step)):
        print(f"  {label:<34} {median[f'{key} {small}'] * 1e3:8.1f}ms "
              f"{median[f'{key} {large}'] * 1e3:8.1f}ms {slope * 1e6:8.1f}us")
    verdict = "ok" if per_step <= SLOPE_TARGET * ref_step else "OVER"
    print(f"  ratio flowhost/reference per step: {per_step / ref_step:.2f}x (median of "
          f"paired rounds {paired:.2f}x), target <= {SLOPE_TARGET:g}x: {verdict}")
    cpu_step, cpu_ref, cpu_paired = slopes(cpu, small, large)
    print(f"  CPU time (user+sys) per step, the same processes: flowhost {cpu_step * 1e6:.1f}us, "
          f"reference {cpu_ref * 1e6:.1f}us, {cpu_step / cpu_ref:.2f}x "
          f"(paired {cpu_paired:.2f}x)")
    print("one-step workflow, whole process")
    for name in ("python -c pass", 'python -c "import flowhost.api"', "flowhost 1"):
        label = "flowhost run (1 step)" if name == "flowhost 1" else name
        print(f"  {label:<34} {median[name] * 1e3:8.1f}ms  (min {min(times[name]) * 1e3:.1f}ms, "
              f"CPU {statistics.median(cpu[name]) * 1e3:.1f}ms)")
    verdict = "ok" if median["flowhost 1"] * 1e3 <= ONE_STEP_TARGET_MS else "OVER"
    print(f"  target <= {ONE_STEP_TARGET_MS:.0f} ms: {verdict}")
    print("planning (flowhost.api.check_spec: parse + every static check), best of 3")
    base = plan[small] / small
    for n, seconds in plan.items():
        print(f"  {n:5d} steps: {seconds * 1e3:8.1f} ms  ({seconds / n * 1e6:6.1f} us/step, "
              f"{seconds / n / base:.2f}x the per-step cost at {small})")


if __name__ == "__main__":
    main()
