"""The runs a state dir holds, for programs and the ``flowhost runs`` commands: list them,
read one's result (the fold of its events), answer a waiting run's question, clear the
cache. Each call opens the state dir, does its work and closes it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from flowhost.context import RunContext, make_context
from flowhost.events import Decision, Event, InterventionResolved
from flowhost.execution import secret_values
from flowhost.intervene import outputs_problem
from flowhost.problems import UserInputError, did_you_mean
from flowhost.questions import settle
from flowhost.redact import holds_secret
from flowhost.result import RunResult, fold
from flowhost.source import parse_document
from flowhost.store import Checkpoint, RunRecord, read
from flowhost.store.interface import StateStore
from flowhost.store.opening import DB_NAME

PathLike = str | os.PathLike[str]


class RunSummary(BaseModel):
    """One run, as ``flowhost runs list --json`` shows it."""

    run_id: str
    workflow_id: str
    status: str  # one of the result's statuses (CONTRACT §7)
    interrupted: bool  # its process died without finishing it: `flowhost resume` it
    steps_completed: int
    total_steps: int
    spec_path: str
    created_at: float
    updated_at: float
    finished_at: float | None


def has_state(ctx: RunContext) -> bool:
    """Whether there may be runs (a PostgreSQL store: yes, until its server says)."""
    return ctx.store_url is not None or (ctx.state_dir / DB_NAME).exists()


@contextmanager
def opened(ctx: RunContext) -> Iterator[StateStore]:
    """The state dir of earlier runs: never created here."""
    from flowhost.api import open_store  # (SQLite, or PostgreSQL at ctx.store_url)

    store = open_store(ctx, create=False)
    try:
        yield store
    finally:
        store.close()


def _context(state_dir: PathLike | None, env: Mapping[str, str] | None,
             workdir: PathLike | None) -> RunContext:
    return make_context(workdir=workdir, env=env, state_dir=state_dir)


def summaries(store: StateStore, limit: int) -> list[RunSummary]:
    found = []
    for record in store.runs(limit=limit):
        status = store.live_status(record)
        found.append(RunSummary(
            run_id=record.run_id, workflow_id=record.workflow_id, status=status,
            interrupted=status == "interrupted", steps_completed=store.steps_succeeded(record),
            total_steps=record.total_steps, spec_path=record.spec_path,
            created_at=record.created_at, updated_at=record.updated_at,
            finished_at=record.finished_at))
    return found


def list_runs(state_dir: PathLike | None = None, *, env: Mapping[str, str] | None = None,
              workdir: PathLike | None = None, limit: int = 50) -> list[RunSummary]:
    """The newest ``limit`` runs of the state dir, newest first ([] when it has none)."""
    ctx = _context(state_dir, env, workdir)
    if not has_state(ctx):
        return []
    with opened(ctx) as store:
        return summaries(store, limit)


def stored_result(store: StateStore, record: RunRecord) -> RunResult:
    """The §7 result of a stored run: the fold of its events, with the status its process
    (alive or not) gives it."""
    return folded_result(record, store.events(record), store.live_status(record))


def folded_result(record: RunRecord, events: list[Event], live_status: str) -> RunResult:
    """``stored_result`` of what was read already: the run's events, its live status."""
    result = fold(events, pattern=_pattern(record))
    if live_status == "interrupted":
        result.status, result.interrupted = "interrupted", True
    return result


def _pattern(record: RunRecord) -> str | None:
    try:
        data = parse_document(record.spec_text, record.spec_path).data
    except UserInputError:
        return None
    pattern = data.get("pattern") if isinstance(data, dict) else None
    return pattern if isinstance(pattern, str) else None


def get_run(run_id: str, state_dir: PathLike | None = None, *,
            env: Mapping[str, str] | None = None,
            workdir: PathLike | None = None) -> RunResult:
    """The result of run ``run_id`` (CONTRACT §7), finished or not."""
    with opened(_context(state_dir, env, workdir)) as store:
        return stored_result(store, store.run(run_id))


def resolve_intervention(run_id: str, step_id: str, action: Decision, *,
                         outputs: dict[str, Any] | None = None, by: str = "user",
                         state_dir: PathLike | None = None,
                         env: Mapping[str, str] | None = None,
                         workdir: PathLike | None = None) -> Checkpoint:
    """Answer the question a waiting run asks about ``step_id`` (``resume`` then applies
    it); the run's checkpoint after the answer."""
    ctx = _context(state_dir, env, workdir)
    with opened(ctx) as store:
        record = store.run(run_id)
        lease = store.acquire(record, ctx.owner)
        if lease is None:
            raise UserInputError(f"run {record.run_id} is being run by another process "
                                 f"(pid {record.pid}); it is not waiting for a decision here")
        try:
            # (a manual.timeout that is up has answered first: its default counts)
            point = read(settle(store, record, store.events(record)))
            _check_waiting(store, record, point, step_id)
            if outputs is not None:
                _check_outputs(record, ctx, step_id, action, outputs)
            asked = point.waiting[step_id]
            answer, won = store.append_decision(record, InterventionResolved(
                run_id=record.run_id, step_id=step_id, action=action, outputs=outputs, by=by,
                plugin=asked.plugin), request_seq=asked.seq)
            if not won:
                raise UserInputError(_already(record.run_id, answer))
            return read(store.events(record))
        finally:
            store.release(lease)


def _already(run_id: str, answer: InterventionResolved) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(answer.ts))
    return (f"step '{answer.step_id}' of run {run_id} is already decided ({answer.action}), "
            f"by {answer.by} at {when}; continue with: flowhost resume {run_id}")


def _check_waiting(store: StateStore, record: RunRecord, point: Checkpoint, step_id: str) -> None:
    run_id = record.run_id
    if not point.waiting and not point.decisions:
        raise UserInputError(f"run {run_id} is not waiting for a decision (it is "
                             f"{store.live_status(record)})")
    if step_id in point.decisions:
        raise UserInputError(_already(run_id, point.decisions[step_id]))
    waiting = point.waiting
    if step_id not in waiting:
        hint = did_you_mean(step_id, waiting)
        raise UserInputError(f"step '{step_id}' of run {run_id} is not waiting for a decision"
                             + (f" — {hint}" if hint else "")
                             + f"; waiting: {', '.join(waiting) or 'none'}")


def _check_outputs(record: RunRecord, ctx: RunContext, step_id: str, action: Decision,
                   outputs: dict[str, Any]) -> None:
    """Outputs for a skip must fit the step plugin's output schema and hold no secret."""
    from flowhost.resumption import load_run_plan

    if action != "skip":
        raise UserInputError("--outputs goes with --action skip only: they stand in for the "
                             "outputs of the skipped step")
    run_ctx = make_context(workdir=record.cwd, env=ctx.env, state_dir=ctx.location)
    try:
        plan = load_run_plan(record, run_ctx)
    except UserInputError:
        return  # the spec no longer checks: resume will say so
    planned = plan.steps.get(step_id)
    if planned is not None:
        problem = outputs_problem(outputs, planned.invoker.output_schema)
        if problem is not None:
            raise UserInputError(f"--outputs do not fit the outputs of {planned.invoker.name} "
                                 f"(step '{step_id}'): {problem}")
    if holds_secret(outputs, secret_values(plan, ctx.env).values()):
        raise UserInputError("--outputs holds the value of a secret; flowhost never stores "
                             "secrets. Give outputs without it")


def clear_cache(plugin: str | None = None, state_dir: PathLike | None = None, *,
                env: Mapping[str, str] | None = None,
                workdir: PathLike | None = None) -> int:
    """Forget cached results (of one plugin); how many were removed."""
    ctx = _context(state_dir, env, workdir)
    if not has_state(ctx):
        return 0
    with opened(ctx) as store:
        return store.clear_cache(plugin)
