"""Helpers shared by the benchmarks: timing, spec generation, the reference loop."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Keep stevedore's entry-point cache out of the user's home while benchmarking.
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="flowhost-bench-cache-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host"))


def best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best, median) of ``repeats`` runs of ``fn``, which returns seconds."""
    times = [fn() for _ in range(repeats)]
    return min(times), statistics.median(times)


def chain_spec(steps: int, *, cache: bool | None = None) -> str:
    """A chain of ``steps`` no-op steps, each reading the previous one's output; ``cache``
    (when given) is written on every step."""
    extra = "" if cache is None else f", cache: {str(cache).lower()}"
    lines = ["workflow_id: bench-chain", "steps:",
             f"  - {{id: s0, plugin: noop, inputs: {{value: 0}}{extra}}}"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: $s{i - 1}.value}}{extra}}}"
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


Record = Callable[[str, dict[str, Any], float], None]  # step id, outputs, duration


def reference_loop(steps: int, record: Record) -> float:
    """The seed's core loop over a chain of no-op steps, minimal: resolve the input, await
    the plugin, validate the output model, ``record`` the step. Returns the seconds taken."""
    from flowhost_test_plugins.basic import Noop

    from flowhost_sdk import InvocationContext

    plugin = Noop()
    specs = [("s0", {"value": 0})] + [(f"s{i}", {"value": f"$s{i - 1}.value"})
                                      for i in range(1, steps)]

    async def loop() -> float:
        context: dict[str, Any] = {}
        start = now()
        for step_id, raw in specs:
            began = time.monotonic()
            inputs = _resolve_inputs(raw, context)
            ctx = InvocationContext(run_id="r", step_id=step_id)
            result = await plugin.invoke(Noop.Inputs.model_validate(inputs), ctx)
            outputs = Noop.Outputs.model_validate(result).model_dump(mode="json")
            context[step_id] = outputs
            record(step_id, outputs, time.monotonic() - began)
        return now() - start

    return asyncio.run(loop())


def durable_reference_loop(steps: int, database: str | Path) -> float:
    """The reference loop, committing one row per step to a new SQLite database at
    ``database`` (WAL, ``synchronous=NORMAL``): the step's id, status, duration and outputs
    as JSON, a row it could be resumed from. Returns the seconds taken."""
    import json
    import sqlite3

    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, step_id TEXT, status TEXT, "
                 "duration_s REAL, outputs TEXT)")

    def record(step_id: str, outputs: dict[str, Any], duration: float) -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO steps (step_id, status, duration_s, outputs) "
                     "VALUES (?, ?, ?, ?)", (step_id, "success", duration,
                                             json.dumps(outputs)))
        conn.execute("COMMIT")

    try:
        return reference_loop(steps, record)
    finally:
        conn.close()


def _resolve_inputs(raw: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    resolved = {}
    for key, value in raw.items():
        if isinstance(value, str) and value.startswith("$"):
            step_id, field = value[1:].split(".")
            resolved[key] = context[step_id][field]
        else:
            resolved[key] = value
    return resolved
