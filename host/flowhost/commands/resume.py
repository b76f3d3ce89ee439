"""``flowhost resume [RUN_ID]``: continue an interrupted or waiting run from its checkpoints.

The run's spec is the one stored with it (checked again against the plugins installed now),
its events say what is left: finished steps are taken over and never run again, steps in
flight when it stopped run again (at-least-once), and the decisions given with
``flowhost runs resolve`` are applied: skip (with outputs or not), retry, or abort.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from flowhost.catalog import Catalog
from flowhost.commands.durable import Durable, pending_decisions, state_flag
from flowhost.commands.run import (
    EXIT_CODES,
    _write_json,
    choose_intervener,
    execute,
    json_out_path,
)
from flowhost.events import AttemptFailed, Event, InterventionResolved, RunFinished, StepFinished
from flowhost.intervene import AttemptSummary, InterventionRequest, PolicyIntervener
from flowhost.plan import Plan
from flowhost.problems import SpecError, UserInputError
from flowhost.refs import iter_refs
from flowhost.result import fold
from flowhost.spec import parse_spec
from flowhost.static import check
from flowhost.store import Checkpoint, RunRecord, Store, read, state_dir_from


def resume_command(args: argparse.Namespace) -> int:
    store = Store.open(state_dir_from(args.state_dir).absolute(), create=False)
    record = _pick(store, args.run_id)
    if not store.locks.acquire(record.run_no):
        raise UserInputError(
            f"run {record.run_id} is being run by another process (pid {record.pid}); "
            "wait for it to end, or stop it, then resume")
    events = store.events(record)
    point = read(events)
    flag = state_flag(args)
    if point.done:
        raise UserInputError(f"run {record.run_id} already finished ({point.status}): "
                             f"nothing to resume. `flowhost runs show {record.run_id}{flag}` "
                             "shows its result")
    json_out = json_out_path(args)
    if json_out is not None:
        json_out = json_out.absolute()
    _enter(record)  # before loading: paths and flowhost.toml mean what they meant then
    plan = load_run_plan(record)
    print(f"run_id: {record.run_id}", flush=True)
    if point.waiting:
        answers = _decide_now(args, plan, point, events)
        if answers is None:
            if json_out is not None:
                _write_json(json_out, fold(events, pattern=plan.workflow.pattern))
            print(pending_decisions(record.run_id, point.waiting, flag))
            return EXIT_CODES["waiting"]
        store.append(record, answers)
        events = store.events(record)
        point = read(events)
    abort = next((d for d in point.decisions.values() if d.action == "abort"), None)
    if abort is not None:
        return _abort(args, store, record, plan, point, abort, events, json_out)
    decided = _skips(record, plan, point)
    if decided:
        store.append(record, decided)
    restored = {sid: f for sid, f in point.finished.items() if sid in plan.steps}
    restored.update({f.step_id: f for f in decided})
    masked = _masked_but_needed(plan, restored)
    for step_id in masked:
        del restored[step_id]
    rerun = frozenset(sid for sid in point.rerun() if sid in plan.steps and sid not in restored)
    rerun |= masked
    print(_summary(record, plan, restored, rerun, point), flush=True)
    durable = Durable(store, record, plan=plan, use_cache=not args.no_cache)
    return execute(args, plan, durable, json_out, restored=restored, rerun=rerun,
                   prior=[*events, *decided])


def _decide_now(args: argparse.Namespace, plan: Plan, point: Checkpoint,
                events: list[Event]) -> list[Event] | None:
    """Answers for a waiting run's open questions, as ``run`` would get them: asked on the
    terminal, or given by ``--on-manual skip|abort``; None leaves the run waiting."""
    intervener = choose_intervener(args.on_manual, None)
    if isinstance(intervener, PolicyIntervener) and (
            args.on_manual is None or intervener.action == "wait"):
        return None  # no one to ask and nothing said: it stays waiting
    answers: list[Event] = []
    for step_id, asked in point.waiting.items():
        planned = plan.steps.get(step_id)
        tried = tuple(AttemptSummary(e.plugin, e.attempt, e.error_type, e.message, e.duration_s)
                      for e in events if isinstance(e, AttemptFailed) and e.step_id == step_id)
        purpose = f": {planned.step.purpose}" if planned and planned.step.purpose else ""
        request = InterventionRequest(
            step_id=step_id, label=f"{planned.index if planned else '?'}{purpose}",
            plugin=asked.plugin, error=asked.error, error_type=asked.error_type,
            hint=asked.hint, attempts=tried,
            output_schema=planned.invoker.output_schema if planned else {})
        resolution = asyncio.run(intervener.resolve(request))
        answers.append(InterventionResolved(run_id=asked.run_id, step_id=step_id,
                                            action=resolution.action,  # type: ignore[arg-type]
                                            outputs=resolution.outputs, by=resolution.by))
    return answers


def _masked_but_needed(plan: Plan, restored: Mapping[str, StepFinished]) -> frozenset[str]:
    """Finished steps whose recorded outputs had secrets masked, and that a step still to run
    or the final checks read: they must run again to have their real outputs."""
    final_reads = {ref.root for check in plan.final_checks for ref, _, _ in iter_refs(check.args)}
    kept = dict(restored)
    rerun: set[str] = set()
    while True:  # a step run again may need the real outputs of a masked step before it
        more = {sid for sid, finished in kept.items()
                if finished.redacted and (sid in final_reads or any(
                    dependent not in kept for dependent in plan.steps[sid].dependents))}
        if not more:
            return frozenset(rerun)
        rerun |= more
        for sid in more:
            del kept[sid]


def _pick(store: Store, run_id: str | None) -> RunRecord:
    if run_id:
        return store.run(run_id)
    record = store.latest_resumable()
    if record is None:
        raise UserInputError(f"no unfinished run to resume in {store.path}. `flowhost runs "
                             "list` shows the runs of this state dir (--state-dir picks "
                             "another)")
    return record


def load_run_plan(record: RunRecord, env: dict[str, str] | None = None) -> Plan:
    """The run's stored spec, checked again against the plugins installed now."""
    text = record.spec_text
    if record.spec_redacted:
        # The spec held a secret value in clear: only its masked text was stored.
        text = _reread(record)
    try:
        spec = parse_spec(text, record.spec_path, record.overrides)
        return check(spec, Catalog(), os.environ if env is None else env)
    except SpecError as exc:
        raise UserInputError(f"run {record.run_id} cannot go on: its workflow no longer "
                             f"checks (installed plugins or environment changed?)\n{exc}") \
            from None


def _reread(record: RunRecord) -> str:
    from flowhost.redact import MASK

    path = Path(record.spec_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserInputError(f"run {record.run_id}: its spec held a secret value, so only a "
                             f"masked copy was stored, and {path} cannot be read ({exc}). "
                             "Put the spec back, using ${secret.NAME} instead of the value")\
            from None
    pattern = "(?s)" + ".+?".join(re.escape(part) for part in record.spec_text.split(MASK))
    if re.fullmatch(pattern, text) is None:
        raise UserInputError(f"run {record.run_id}: its spec held a secret value, so only a "
                             f"masked copy was stored, and {path} changed since. Put the "
                             "spec back as it was")
    return text


def _enter(record: RunRecord) -> None:
    """Relative paths in the spec mean what they meant when the run started."""
    here = Path.cwd()
    there = Path(record.cwd)
    if there != here and there.is_dir():
        print(f"(working directory: {there}, where the run started)", file=sys.stderr)
        os.chdir(there)


def _skips(record: RunRecord, plan: Plan, point: Checkpoint) -> list[StepFinished]:
    """The ``StepFinished`` each skip decision stands for."""
    finished = []
    for step_id, decision in point.decisions.items():
        request = point.requests.get(step_id)
        if decision.action != "skip" or request is None or step_id not in plan.steps:
            continue
        how = "with outputs given by" if decision.outputs is not None else "by"
        finished.append(StepFinished(
            run_id=record.run_id, step_id=step_id, plugin=plan.steps[step_id].step.plugin,
            used_plugin=request.plugin, status="skipped", attempts=request.attempts,
            duration_s=0.0, outputs=decision.outputs, error=request.error,
            error_type=request.error_type, hint=request.hint,
            reason=f"skipped {how} {decision.by} after: {request.error}"))
    return finished


def _abort(args: argparse.Namespace, store: Store, record: RunRecord, plan: Plan,
           point: Checkpoint, decision: InterventionResolved, events: list[Event],
           json_out: Path | None) -> int:
    """End the run as the engine does when a person aborts it at a step."""
    run_id, step_id = record.run_id, decision.step_id
    request = point.requests[step_id]
    ended: list[Event] = [StepFinished(
        run_id=run_id, step_id=step_id, plugin=plan.steps[step_id].step.plugin
        if step_id in plan.steps else request.plugin, used_plugin=request.plugin,
        status="failed", attempts=request.attempts, duration_s=0.0, error=request.error,
        error_type=request.error_type, hint=request.hint)]
    reason = f"run aborted by the user at step '{step_id}'"
    for other in plan.steps.values():
        if other.id != step_id and other.id not in point.finished:
            ended.append(StepFinished(run_id=run_id, step_id=other.id,
                                      plugin=other.step.plugin, used_plugin=other.step.plugin,
                                      status="skipped", attempts=0, duration_s=0.0,
                                      reason=reason))
    ended.append(RunFinished(run_id=run_id, status="aborted", duration_s=0.0, message=reason))
    store.append(record, ended)
    store.locks.release(record.run_no)
    store.close()
    result = fold([*events, *ended], pattern=plan.workflow.pattern)
    if json_out is not None:
        _write_json(json_out, result)
    print(f"Run {run_id} aborted at step '{step_id}', as decided by {decision.by}. "
          f"`flowhost runs show {run_id}{state_flag(args)}` shows the result.")
    return EXIT_CODES["aborted"]


def _summary(record: RunRecord, plan: Plan, restored: dict[str, StepFinished],
             rerun: frozenset[str], point: Checkpoint) -> str:
    text = (f"Resuming run {record.run_id} ({record.workflow_id}): {len(restored)} of "
            f"{len(plan.steps)} steps finished before")
    if rerun:
        text += f"; in flight when it stopped, run again: {', '.join(sorted(rerun))}"
    retried = [sid for sid, d in point.decisions.items() if d.action == "retry"]
    if retried:
        text += f"; retried as decided: {', '.join(sorted(retried))}"
    return text
