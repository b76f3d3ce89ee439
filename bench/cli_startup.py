"""CLI start-up time: ``flowhost --help`` and ``flowhost plugins list`` with 100 extra plugins.

Creates 100 fake installed distributions (``*.dist-info`` with ``METADATA`` and an
``entry_points.txt`` in group ``flowhost.plugins``) on ``PYTHONPATH``; their modules do not
exist, which is fine because listing must never import a plugin. Each command runs as a fresh
subprocess with this interpreter. ``XDG_CACHE_HOME`` (stevedore's entry-point cache) starts
empty: the very first listing fills it and is reported on its own. Then each command runs
once more ("first": disk caches warming up) and ``--repeats`` times for the median and min.
Baselines, measured in the same run: ``python -c pass`` (interpreter start-up) and
``python -c "import pydantic"``. Target: each flowhost command <= 300 ms.

    python bench/cli_startup.py [--plugins 100] [--repeats 10]
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

TARGET_MS = 300.0


def make_site(root: Path, count: int) -> Path:
    """``count`` fake distributions, each declaring one plugin entry point, under root/site."""
    site = root / "site"
    for n in range(count):
        dist = site / f"flowhost_bench_plugin_{n}-1.0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: flowhost-bench-plugin-{n}\nVersion: 1.0.0\n",
            encoding="utf-8",
        )
        (dist / "entry_points.txt").write_text(
            f"[flowhost.plugins]\nbench-plugin-{n} = flowhost_bench_plugin_{n}.plugin:Plugin\n",
            encoding="utf-8",
        )
    return site


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall time in seconds of one run, and its stdout; fails loudly on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return elapsed, done.stdout


def measure(argv: list[str], env: dict[str, str], cwd: Path, repeats: int) -> dict[str, float]:
    first, _ = run_once(argv, env, cwd)
    times = [run_once(argv, env, cwd)[0] for _ in range(repeats)]
    return {"first": first * 1e3, "median": statistics.median(times) * 1e3,
            "min": min(times) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-startup-") as tmp:
        root = Path(tmp)
        site = make_site(root, args.plugins)
        cache = root / "cache"
        cache.mkdir()
        work = root / "work"  # no flowhost.toml here
        work.mkdir()
        env = {**os.environ, "XDG_CACHE_HOME": str(cache),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                           os.environ.get("PYTHONPATH")]))}
        env.pop("FLOWHOST_CONFIG", None)

        # The first listing fills stevedore's entry-point cache (XDG_CACHE_HOME is empty).
        cold, listing = run_once([python, "-m", "flowhost", "plugins", "list"], env, work)
        listed = sum(1 for line in listing.splitlines() if line.startswith("bench-plugin-"))
        if listed != args.plugins:
            raise SystemExit(f"plugins list shows {listed} of {args.plugins} bench plugins")

        commands = {
            "python -c pass": [python, "-c", "pass"],
            'python -c "import pydantic"': [python, "-c", "import pydantic"],
            "flowhost --help": [python, "-m", "flowhost", "--help"],
            "flowhost plugins list": [python, "-m", "flowhost", "plugins", "list"],
        }
        results = {name: measure(argv, env, work, args.repeats) for name, argv in commands.items()}

    base = results["python -c pass"]["median"]
    print(f"CLI start-up, {args.plugins} extra plugins installed, {args.repeats} runs each "
          f"(+1 first run), {python}")
    print(f"  {'command':<30} {'median':>9} {'min':>9} {'first':>9}  over `pass`")
    for name, r in results.items():
        print(f"  {name:<30} {r['median']:7.1f}ms {r['min']:7.1f}ms {r['first']:7.1f}ms  "
              f"{r['median'] - base:+7.1f}ms")
    print(f"  flowhost plugins list, empty entry-point cache: {cold * 1e3:.1f}ms (once)")
    for name in ("flowhost --help", "flowhost plugins list"):
        verdict = "ok" if results[name]["median"] <= TARGET_MS else "OVER"
        print(f"  {name}: median {results[name]['median']:.0f} ms, target <= "
              f"{TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
