"""``flowhost runs list|show|resolve`` and ``flowhost cache clear``, on the local state dir."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Literal

from pydantic import BaseModel

from flowhost.commands.durable import pending_decisions, secret_values, state_flag
from flowhost.events import InterventionResolved
from flowhost.intervene import outputs_problem
from flowhost.problems import UserInputError, did_you_mean
from flowhost.result import RunResult, fold
from flowhost.source import parse_document
from flowhost.store import RunRecord, Store, read, state_dir_from
from flowhost.store.db import DB_NAME, event_range


class RunSummary(BaseModel):
    """One line of ``flowhost runs list --json``."""

    run_id: str
    workflow_id: str
    status: str  # one of the result's statuses (CONTRACT §7)
    interrupted: bool  # "running", but no process runs it any more: `flowhost resume` it
    steps_completed: int
    total_steps: int
    spec_path: str
    created_at: float
    updated_at: float
    finished_at: float | None


def _open(args: argparse.Namespace) -> Store:
    """The state dir of an earlier run: these commands never create one."""
    return Store.open(state_dir_from(args.state_dir), create=False)


def list_command(args: argparse.Namespace) -> int:
    state_dir = state_dir_from(args.state_dir)
    if not state_dir.is_file() and not (state_dir / DB_NAME).exists():
        print("[]" if args.json else f"No runs in {state_dir}.")
        return 0
    with _open(args) as store:
        summaries = [_summary(store, record) for record in store.runs(limit=args.limit)]
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"No runs in {store.path}.")
        return 0
    rows = [("RUN ID", "WORKFLOW", "STATUS", "STEPS", "STARTED")]
    rows += [(s.run_id, s.workflow_id, "interrupted" if s.interrupted else s.status,
              f"{s.steps_completed}/{s.total_steps}",
              time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created_at)))
             for s in summaries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


def _summary(store: Store, record: RunRecord) -> RunSummary:
    low, high = event_range(record.run_no)
    row = store.conn.execute(
        "SELECT count(DISTINCT step_id) FROM events WHERE id BETWEEN ? AND ? AND "
        "type = 'StepFinished' AND json_extract(payload, '$.status') = 'success'",
        (low, high)).fetchone()
    live = store.live_status(record)
    interrupted = live == "interrupted"
    return RunSummary(run_id=record.run_id, workflow_id=record.workflow_id,
                      status="running" if interrupted else live, interrupted=interrupted,
                      steps_completed=int(row[0]),
                      total_steps=record.total_steps, spec_path=record.spec_path,
                      created_at=record.created_at, updated_at=record.updated_at,
                      finished_at=record.finished_at)


def run_result(store: Store, record: RunRecord) -> RunResult:
    """The §7 result of a stored run: the fold of its events."""
    return fold(store.events(record), pattern=_pattern(record))


def _pattern(record: RunRecord) -> str | None:
    try:
        data = parse_document(record.spec_text, record.spec_path).data
    except UserInputError:
        return None
    pattern = data.get("pattern") if isinstance(data, dict) else None
    return pattern if isinstance(pattern, str) else None


def show_command(args: argparse.Namespace) -> int:
    with _open(args) as store:
        return _show(args, store)


def _show(args: argparse.Namespace, store: Store) -> int:
    record = store.run(args.run_id)
    result = run_result(store, record)
    status = store.live_status(record)
    result.interrupted = status == "interrupted"
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
        return 0
    print(f"Run {record.run_id}: {record.workflow_id} ({record.spec_path})")
    print(f"Status: {status}, {result.steps_completed} succeeded, {result.steps_failed} "
          f"failed, {result.steps_skipped} skipped of {len(result.steps)} steps")
    for step in result.steps:
        extras = [f"{step.duration_s:.2f}s"] if step.status in ("success", "failed") else []
        extras += ["cached"] if step.cached else []
        extras += ["rerun after interruption"] if step.rerun_after_interruption else []
        extras += [f"used {step.used_plugin}"] if step.used_plugin != step.plugin else []
        line = f"  {step.status:<9} {step.id} ({step.plugin})"
        line += f"  {', '.join(extras)}" if extras else ""
        if step.error:
            line += f"\n            {step.error_type or 'Error'}: {step.error}"
        elif step.reason and step.status != "success":
            line += f"\n            {step.reason}"
        print(line)
    flag = state_flag(args)
    point = read(store.events(record))
    if point.waiting:
        print(pending_decisions(record.run_id, point.waiting, flag))
    elif status in ("interrupted", "cancelled"):
        print(f"Continue with: flowhost resume {record.run_id}{flag}")
    return 0


def resolve_command(args: argparse.Namespace) -> int:
    with _open(args) as store:
        record = store.run(args.run_id)
        if not store.locks.acquire(record.run_no):
            raise UserInputError(f"run {record.run_id} is being run by another process "
                                 f"(pid {record.pid}); it is not waiting for a decision here")
        try:
            return _resolve(args, store, record)
        finally:
            store.locks.release(record.run_no)


def _resolve(args: argparse.Namespace, store: Store, record: RunRecord) -> int:
    point = read(store.events(record))
    run_id, step_id, flag = record.run_id, args.step, state_flag(args)
    if point.status != "waiting":
        raise UserInputError(f"run {run_id} is not waiting for a decision (it is "
                             f"{store.live_status(record)})")
    if step_id in point.decisions:
        decided = point.decisions[step_id].action
        raise UserInputError(f"step '{step_id}' of run {run_id} is already decided "
                             f"({decided}); continue with: flowhost resume {run_id}{flag}")
    waiting = point.waiting
    if step_id not in waiting:
        hint = did_you_mean(step_id, waiting)
        raise UserInputError(f"step '{step_id}' of run {run_id} is not waiting for a decision"
                             + (f" — {hint}" if hint else "")
                             + f"; waiting: {', '.join(waiting) or 'none'}")
    outputs = _outputs(args, record, step_id)
    action: Literal["retry", "skip", "abort"] = args.action
    store.append(record, [InterventionResolved(run_id=run_id, step_id=step_id, action=action,
                                               outputs=outputs, by="user")])
    others = [sid for sid in waiting if sid != step_id]
    print(f"Recorded: {action} for step '{step_id}' of run {run_id}.")
    if others:
        print(f"Still waiting for a decision: {', '.join(others)}.")
    else:
        print(f"Continue with: flowhost resume {run_id}{flag}")
    return 0


def _outputs(args: argparse.Namespace, record: RunRecord, step_id: str) -> dict[str, Any] | None:
    """``--outputs``: a JSON object that fits the step plugin's output schema."""
    if args.outputs is None:
        return None
    if args.action != "skip":
        raise UserInputError("--outputs goes with --action skip only: they stand in for the "
                             "outputs of the skipped step")
    try:
        outputs = json.loads(args.outputs)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"--outputs: not valid JSON ({exc})") from None
    if not isinstance(outputs, dict):
        raise UserInputError("--outputs: must be a JSON object, e.g. '{\"field\": \"value\"}'")
    from flowhost.commands.resume import load_run_plan

    try:
        plan = load_run_plan(record)
    except UserInputError:
        return outputs  # the spec no longer checks: resume will say so
    planned = plan.steps.get(step_id)
    if planned is not None:
        problem = outputs_problem(outputs, planned.invoker.output_schema)
        if problem is not None:
            raise UserInputError(f"--outputs do not fit the outputs of {planned.invoker.name} "
                                 f"(step '{step_id}'): {problem}")
    secrets = secret_values(plan, os.environ)
    text = json.dumps(outputs)
    if any(value in text or value in args.outputs for value in secrets.values()):
        raise UserInputError("--outputs holds the value of a secret; flowhost never stores "
                             "secrets. Give outputs without it")
    return outputs


def cache_clear_command(args: argparse.Namespace) -> int:
    state_dir = state_dir_from(args.state_dir)
    if not state_dir.is_file() and not (state_dir / DB_NAME).exists():
        print(f"Nothing cached: no flowhost state in {state_dir}.")
        return 0
    with _open(args) as store:
        removed = store.clear_cache(args.plugin)
    what = f" of {args.plugin}" if args.plugin else ""
    print(f"Removed {removed} cached result{'s' if removed != 1 else ''}{what} from "
          f"{store.path}.")
    return 0
