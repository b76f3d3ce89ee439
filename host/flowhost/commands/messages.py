"""What ``run``, ``resume`` and ``runs`` tell the user about going on: the open questions of
a waiting run and how to answer them; and the table of ``runs list``, which reads the same
whether the runs are in the local state dir or in a daemon."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Iterable, Mapping

from flowhost.events import InterventionRequested


def state_flag(args: argparse.Namespace) -> str:
    """`` --state-dir D`` (or `` --store URL``, its password hidden) for the commands we
    print, when the user chose one."""
    chosen = getattr(args, "state_dir", None)
    if chosen and "://" in chosen:
        from flowhost.store.postgres.url import hide_password

        return f" --store {shlex.quote(hide_password(chosen))}"
    return f" --state-dir {shlex.quote(chosen)}" if chosen else ""


def print_runs(runs: Iterable[tuple[str, str, str, str, float]]) -> None:
    """One line per run (its id, workflow, status, steps done of all, and when it started:
    unix time) under a header, in aligned columns."""
    rows = [("RUN ID", "WORKFLOW", "STATUS", "STEPS", "STARTED")]
    rows += [(run_id, workflow_id, status, steps,
              time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)))
             for run_id, workflow_id, status, steps, started in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


def pending_decisions(run_id: str, waiting: Mapping[str, InterventionRequested],
                      flag: str = "") -> str:
    lines = []
    for step_id, request in waiting.items():
        lines += [
            f"⏸  Run {run_id} is waiting for a decision on step '{step_id}' "
            f"({request.plugin}):",
            f"   {request.error_type}: {request.error}",
        ]
        if request.hint:
            lines.append(f"   Hint: {request.hint}")
        base = f"flowhost runs resolve {run_id} {shlex.quote(step_id)}{flag}"
        lines += [
            "   Answer with one of:",
            f"     {base} --action retry",
            f"     {base} --action skip [--outputs JSON]   "
            "(JSON: outputs that stand in for the step's)",
            f"     {base} --action abort",
        ]
    lines.append(f"   then continue with: flowhost resume {run_id}{flag}")
    return "\n".join(lines)
