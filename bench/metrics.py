"""What the metrics cost (issue 12): a whole ``flowhost run`` with metrics on against the
same run with them off, and a scrape of a daemon-side registry that has seen 1,000 runs
over 50 plugins.

1. Whole processes: ``flowhost run CHAIN --no-progress --state-dir FRESH`` of a chain of N
   no-op async steps (as ``bench/whole_run.py``: ``cache: false``, each step reading the
   previous one's output), with and without ``--metrics-listen 127.0.0.1:0`` (a free
   port, served while the run goes on), at N=500 and N=2000. The per-step cost is the
   slope between them (start-up and imports cancel out); the fixed cost (importing
   prometheus_client, binding the port) is the difference at N=500. Interleaved rounds,
   medians. Target: slope with metrics <= 1.10x the slope without.
2. The daemon's registry: synthetic committed events of 1,000 runs (10 steps each, over 50
   plugins and 20 workflows, with retries, fallbacks, failures, skips, cache hits and
   questions to a person) fed into a ``MetricsObserver``, then ``generate_latest`` timed
   (classic text and OpenMetrics), and the same after 1,000 more runs: the exposition must
   not grow with the runs (bounded series). Target: a scrape <= 50 ms.
3. With ``--daemon``: a real ``flowhost serve`` whose store gets those 1,000 runs written
   while it runs (the feed counts them as it would its workers' commits), then scraped
   over HTTP.

No assertions (machines are shared and noisy): figures and ratios are printed.

    python bench/metrics.py [--rounds 7] [--small 500] [--large 2000] [--daemon]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from _common import chain_spec, now
from whole_run import Fresh, flowhost_run, wall

SLOPE_TARGET = 1.10
SCRAPE_TARGET_MS = 50.0
PLUGINS = [f"plugin-{number:02d}" for number in range(50)]
WORKFLOWS = [f"workflow-{number:02d}" for number in range(20)]


def whole_processes(rounds: int, small: int, large: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flowhost-bench-metrics-") as tmp:
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        fresh = Fresh(root)
        specs = {n: work / f"chain{n}.yaml" for n in (small, large)}
        for n, path in specs.items():
            path.write_text(chain_spec(n, cache=False), encoding="utf-8")

        def run(n: int, metrics: bool) -> Callable[[], float]:
            extra = ["--metrics-listen", "127.0.0.1:0"] if metrics else []
            return lambda: wall([*flowhost_run(specs[n]), "--state-dir", str(fresh("state")),
                                 *extra], work)

        measures = {(n, on): run(n, on) for n in (small, large) for on in (False, True)}
        for measure in measures.values():  # warm up: stevedore's cache, the disk's caches
            measure()
        times: dict[tuple[int, bool], list[float]] = {key: [] for key in measures}
        for _ in range(rounds):
            for key, measure in measures.items():
                times[key].append(measure())
    median = {key: statistics.median(values) for key, values in times.items()}
    span = large - small
    slope = {on: (median[(large, on)] - median[(small, on)]) / span for on in (False, True)}
    paired = statistics.median(
        (on_l - on_s) / (off_l - off_s) for off_s, off_l, on_s, on_l in zip(
            times[(small, False)], times[(large, False)], times[(small, True)],
            times[(large, True)], strict=True) if off_l > off_s)
    print(f"1. whole processes, {rounds} interleaved rounds (medians), {sys.executable}")
    print("   python -m flowhost run chain<N>.yaml --no-progress --state-dir <new> "
          "[--metrics-listen 127.0.0.1:0]   (cache: false)")
    print(f"   {'':<22} {'N=' + str(small):>10} {'N=' + str(large):>10} {'per step':>10}")
    for on, label in ((False, "metrics off"), (True, "metrics on")):
        print(f"   {label:<22} {median[(small, on)] * 1e3:8.1f}ms "
              f"{median[(large, on)] * 1e3:8.1f}ms {slope[on] * 1e6:8.1f}us")
    fastest = {on: (min(times[(large, on)]) - min(times[(small, on)])) / span
               for on in (False, True)}
    ratio = slope[True] / slope[False]
    verdict = "ok" if ratio <= SLOPE_TARGET else "OVER"
    print(f"   per-step ratio on/off: {ratio:.3f}x (median of paired rounds {paired:.3f}x), "
          f"target <= {SLOPE_TARGET:.2f}x: {verdict}")
    print(f"   the same from each one's fastest run: {fastest[False] * 1e6:.1f}us -> "
          f"{fastest[True] * 1e6:.1f}us per step, {fastest[True] / fastest[False]:.3f}x")
    print(f"   whole run at N={large}: {median[(large, True)] / median[(large, False)]:.3f}x; "
          f"fixed cost (N={small}): "
          f"{(median[(small, True)] - median[(small, False)]) * 1e3:+.1f} ms")


def synthetic_runs(first: int, count: int) -> list[object]:
    """The committed events of ``count`` runs, as the daemon's journal would hold them."""
    from flowhost.events import (
        AttemptFailed,
        AttemptStarted,
        CacheHit,
        FallbackChosen,
        InterventionRequested,
        InterventionResolved,
        RetryScheduled,
        RunFinished,
        RunStarted,
        StepFinished,
    )

    events: list[object] = []
    for number in range(first, first + count):
        run = f"20260101-000000-{number:06x}"
        workflow = WORKFLOWS[number % len(WORKFLOWS)]
        ts = 1_000.0 + number
        events.append(RunStarted(run_id=run, workflow_id=workflow, description="",
                                 total_steps=10, steps=(), ts=ts))
        failed = False
        for index in range(10):
            step, plugin = f"s{index}", PLUGINS[(number * 10 + index) % len(PLUGINS)]
            kind = (number + index) % 10
            if kind == 0:
                events.append(CacheHit(run_id=run, step_id=step, plugin=plugin))
                events.append(StepFinished(run_id=run, step_id=step, plugin=plugin,
                                           used_plugin=plugin, status="success", attempts=0,
                                           duration_s=0.001, cached=True))
                continue
            events.append(AttemptStarted(run_id=run, step_id=step, plugin=plugin, attempt=1,
                                         transport="grpc" if kind == 9 else "local"))
            status = "success"
            if kind in (3, 5, 7):
                events.append(AttemptFailed(
                    run_id=run, step_id=step, plugin=plugin, attempt=1, error_type="E",
                    error_kind="transient" if kind == 3 else "permanent", message="x",
                    hint=None, duration_s=0.2))
                if kind == 3:
                    events.append(RetryScheduled(run_id=run, step_id=step, plugin=plugin,
                                                 next_attempt=2, delay_s=1.0))
                    events.append(AttemptStarted(run_id=run, step_id=step, plugin=plugin,
                                                 attempt=2))
                elif kind == 5:
                    other = PLUGINS[(number + 7) % len(PLUGINS)]
                    events.append(FallbackChosen(run_id=run, step_id=step, plugin=plugin,
                                                 fallback=other, reason="x"))
                    events.append(AttemptStarted(run_id=run, step_id=step, plugin=other,
                                                 attempt=2))
                else:
                    events.append(InterventionRequested(
                        run_id=run, step_id=step, plugin=plugin, error="x", error_type="E",
                        hint=None, attempts=1, ts=ts + index))
                    action = ("skip", "retry", "abort")[number % 3]
                    events.append(InterventionResolved(run_id=run, step_id=step,
                                                       action=action, plugin=plugin,
                                                       ts=ts + index + 30.0))
                    status = "skipped" if action == "skip" else "failed"
                    failed = failed or action == "abort"
            events.append(StepFinished(run_id=run, step_id=step, plugin=plugin,
                                       used_plugin=plugin, status=status,  # type: ignore[arg-type]
                                       attempts=2, duration_s=0.05 * (index + 1)))
        events.append(RunFinished(run_id=run, status="aborted" if failed else "success",
                                  duration_s=10.0, workflow_id=workflow, ts=ts + 60.0))
    return events


def registry_scrape() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    from flowhost.metrics import Families, MetricsObserver

    families = Families()
    observer = MetricsObserver(families)
    print("2. a daemon-side registry, 50 plugins, 20 workflows, 10 steps a run")
    for seen, batch in ((1000, synthetic_runs(0, 1000)), (2000, synthetic_runs(1000, 1000))):
        start = now()
        for event in batch:
            observer(event)  # type: ignore[arg-type]
        fed = now() - start
        text = generate_latest(families.registry)
        classic = _best(lambda: generate_latest(families.registry))
        open_text = openmetrics(families.registry)
        open_ms = _best(lambda: openmetrics(families.registry))
        series = sum(1 for line in text.splitlines() if not line.startswith(b"#"))
        verdict = "ok" if max(classic, open_ms) <= SCRAPE_TARGET_MS else "OVER"
        print(f"   after {seen:5d} runs: {series} series, text {len(text) / 1024:.0f} KiB "
              f"in {classic:.1f} ms, OpenMetrics {len(open_text) / 1024:.0f} KiB in "
              f"{open_ms:.1f} ms (target <= {SCRAPE_TARGET_MS:.0f} ms: {verdict}); fed "
              f"{len(batch)} events at {fed / len(batch) * 1e6:.2f} us/event")


def _best(fn: Callable[[], object], repeats: int = 7) -> float:
    """Milliseconds, best of ``repeats``."""
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return min(times) * 1e3


def real_daemon() -> None:
    from flowhost.store import Store

    with tempfile.TemporaryDirectory(prefix="flowhost-bench-daemon-") as tmp:
        state = Path(tmp) / "state"
        log = (Path(tmp) / "daemon.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowhost", "serve", "--state-dir", str(state), "--listen",
             "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], cwd=tmp,
            stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"metrics on (http://\S+/metrics)", line)
            if found is None:
                raise SystemExit(f"the daemon did not start: {line}")
            url = found[1]
            store = Store.open(state)
            events = synthetic_runs(0, 1000)
            by_run: dict[str, list[object]] = {}
            for event in events:
                by_run.setdefault(event.run_id, []).append(event)  # type: ignore[attr-defined]
            start = now()
            for run_id, run_events in by_run.items():
                record = store.create_run(
                    run_id=run_id, workflow_id=run_events[0].workflow_id,  # type: ignore[attr-defined]
                    spec_text="", spec_path="bench", spec_redacted=False, overrides=[],
                    cwd=str(state / "runs" / run_id), total_steps=10)
                store.append(record, run_events)  # type: ignore[arg-type]
            store.close()
            written = now() - start
            deadline = time.monotonic() + 120
            while True:
                text = _scrape(url)
                counted = sum(float(v) for v in re.findall(
                    rb"^flowhost_runs_total\{[^}]*\} (\S+)$", text, re.MULTILINE))
                if counted >= 1000 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            counted_at = now() - start
            scrapes = [_timed_scrape(url) for _ in range(20)]
            print(f"3. a real daemon: 1,000 runs written to its store in {written:.1f} s, "
                  f"all counted {counted_at:.1f} s after the first ({counted:.0f} runs); "
                  f"GET /metrics over loopback: median {statistics.median(scrapes):.1f} ms, "
                  f"max {max(scrapes):.1f} ms, {len(text) / 1024:.0f} KiB")
        finally:
            proc.terminate()
            proc.wait(60)
            log.close()


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return bytes(answer.read())


def _timed_scrape(url: str) -> float:
    start = now()
    _scrape(url)
    return (now() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--daemon", action="store_true", help="also scrape a real daemon")
    parser.add_argument("--skip-runs", action="store_true", help="only the scrape parts")
    args = parser.parse_args()
    print(f"python bench/metrics.py --rounds {args.rounds} --small {args.small} "
          f"--large {args.large}{' --daemon' if args.daemon else ''}")
    if not args.skip_runs:
        whole_processes(args.rounds, args.small, args.large)
    registry_scrape()
    if args.daemon:
        real_daemon()


if __name__ == "__main__":
    main()
