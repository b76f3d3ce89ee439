"""Helpers shared by the benchmarks: timing and spec generation."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Keep stevedore's entry-point cache out of the user's home while benchmarking.
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="flowhost-bench-cache-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))


def best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best, median) of ``repeats`` runs of ``fn``, which returns seconds."""
    times = [fn() for _ in range(repeats)]
    return min(times), statistics.median(times)


def chain_spec(steps: int) -> str:
    lines = ["workflow_id: bench-chain", "steps:", "  - {id: s0, plugin: noop, inputs: {value: 0}}"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: $s{i - 1}.value}}}}"
              for i in range(1, steps)]
    return "\n".join(lines) + "\n"


def chain_with_ladder_spec(steps: int) -> str:
    """The chain, with a retry policy and a fallback declared on every step (never used)."""
    ladder = ("retry: {max_attempts: 3, initial_delay: 1, jitter: true}, "
              "fallback: [{plugin: noop}]")
    lines = ["workflow_id: bench-chain-ladder", "steps:",
             f"  - {{id: s0, plugin: noop, inputs: {{value: 0}}, {ladder}}}"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: $s{i - 1}.value}}, {ladder}}}"
              for i in range(1, steps)]
    return "\n".join(lines) + "\n"


def fanout_spec(steps: int) -> str:
    lines = ["workflow_id: bench-fanout", "steps:"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: {i}}}}}" for i in range(steps)]
    return "\n".join(lines) + "\n"


def now() -> float:
    return time.perf_counter()
