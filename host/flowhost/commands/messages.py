"""What ``run``, ``resume`` and ``runs`` tell the user about going on: the open questions of
a waiting run and how to answer them."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping

from flowhost.events import InterventionRequested


def state_flag(args: argparse.Namespace) -> str:
    """`` --state-dir D`` (or `` --store URL``, its password hidden) for the commands we
    print, when the user chose one."""
    chosen = getattr(args, "state_dir", None)
    if chosen and "://" in chosen:
        from flowhost.store.postgres.url import hide_password

        return f" --store {shlex.quote(hide_password(chosen))}"
    return f" --state-dir {shlex.quote(chosen)}" if chosen else ""


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
