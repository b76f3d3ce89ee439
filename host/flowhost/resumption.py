"""Continuing a run from its checkpoints: what is finished (never runs again), what was in
flight (runs again, at-least-once), and what the decisions given while it waited mean.

The run's spec is the one stored with it, checked again against the plugins installed now,
in the run's own working directory: relative paths mean what they meant when it started.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flowhost.catalog import Catalog
from flowhost.context import RunContext
from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    SpecReloaded,
    StepFinished,
)
from flowhost.plan import Plan, PlannedCheck
from flowhost.problems import SpecError, UserInputError
from flowhost.redact import MASK
from flowhost.refs import CDict, Const, iter_refs
from flowhost.run_state import Earlier
from flowhost.spec import Step
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost.store import Checkpoint, RunRecord


def load_run_plan(record: RunRecord, ctx: RunContext) -> Plan:
    """The run's stored spec, checked again against the plugins installed now."""
    text = record.spec_text
    if record.spec_redacted:
        # The spec held a secret value in clear: only its masked text was stored.
        text = _reread(record)
    try:
        spec = parse_spec(text, record.spec_path, record.overrides)
        return check(spec, Catalog.for_context(ctx), ctx.env)
    except SpecError as exc:
        raise UserInputError(f"run {record.run_id} cannot go on: its workflow no longer "
                             f"checks (installed plugins or environment changed?)\n{exc}") \
            from None


def _reread(record: RunRecord) -> str:
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


def edited_spec(record: RunRecord) -> str | None:
    """The text of the run's spec file when it changed since the run started (None: the
    same, or no file to read, as for a spec a client submitted)."""
    try:
        text = Path(record.spec_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if record.spec_redacted:
        pattern = "(?s)" + ".+?".join(re.escape(part) for part in record.spec_text.split(MASK))
        return None if re.fullmatch(pattern, text) is not None else text
    return None if text == record.spec_text else text


def reload_plan(record: RunRecord, ctx: RunContext, point: Checkpoint,
                ended: bool) -> tuple[Plan, str, SpecReloaded]:
    """``resume --reload-spec``: the edited spec, checked, and which results it takes back —
    steps whose definition changed, what depends on them, and (``ended``: the run had
    failed or was aborted) the steps that had not succeeded."""
    path = record.spec_path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--reload-spec: cannot read {path} ({exc})") from None
    try:
        plan = check(parse_spec(text, path, record.overrides), Catalog.for_context(ctx), ctx.env)
    except SpecError as exc:
        raise UserInputError(f"--reload-spec: the edited {path} does not check; the run is "
                             f"unchanged\n{exc}") from None
    before = _definitions(record)
    after = {sid: _definition(planned.step) for sid, planned in plan.steps.items()}
    changed = [sid for sid in after if sid in before and before[sid] != after[sid]]
    seeds = set(changed)
    if ended:
        seeds |= {sid for sid, done in point.finished.items() if done.status != "success"}
    again = _with_dependents(seeds & set(after), plan)
    event = SpecReloaded(
        run_id=record.run_id, path=path, changed=tuple(changed),
        # (a question a changed step asked is taken back too: it runs again instead)
        rerun=tuple(sid for sid in after if sid in again
                    and (sid in point.finished or sid in point.requests)),
        added=tuple(sid for sid in after if sid not in before),
        removed=tuple(sid for sid in before if sid not in after))
    return plan, text, event


def _definitions(record: RunRecord) -> dict[str, str]:
    """Each step's definition in the spec the run had (none if it no longer parses: then
    every step counts as changed)."""
    try:
        spec = parse_spec(record.spec_text, record.spec_path, record.overrides)
    except SpecError:
        return {}
    return {step.id: _definition(step) for step in spec.workflow.steps}


def _definition(step: Step) -> str:
    # What a step does; its purpose and display number do not change its result.
    return json.dumps(step.model_dump(mode="json", exclude={"purpose", "number"}),
                      sort_keys=True)


def _with_dependents(seeds: Iterable[str], plan: Plan) -> set[str]:
    found, todo = set(seeds), list(seeds)
    while todo:
        for dependent in plan.steps[todo.pop()].dependents:
            if dependent not in found:
                found.add(dependent)
                todo.append(dependent)
    return found


@dataclass(frozen=True, slots=True)
class Continuation:
    """How a resumed run goes on: ``earlier`` for the engine, ``decided`` the events the
    decisions stand for (written before it starts), and what to tell the user."""

    earlier: Earlier
    decided: tuple[StepFinished, ...]
    retried: tuple[str, ...]

    def summary(self, record: RunRecord, plan: Plan) -> str:
        text = (f"Resuming run {record.run_id} ({record.workflow_id}): "
                f"{len(self.earlier.restored)} of {len(plan.steps)} steps finished before")
        if self.earlier.rerun:
            text += (f"; in flight when it stopped, run again: "
                     f"{', '.join(sorted(self.earlier.rerun))}")
        if self.retried:
            text += f"; retried as decided: {', '.join(sorted(self.retried))}"
        return text


def continuation(record: RunRecord, plan: Plan, point: Checkpoint,
                 events: list[Event]) -> Continuation:
    decided = tuple(_skips(record, plan, point)) + tuple(_fails(record, plan, point))
    restored = {sid: f for sid, f in point.finished.items() if sid in plan.steps}
    restored.update({f.step_id: f for f in decided})
    masked = masked_but_needed(plan, restored)
    for step_id in masked:
        del restored[step_id]
    rerun = frozenset(sid for sid in point.rerun() if sid in plan.steps and sid not in restored)
    retried = tuple(sid for sid, d in point.decisions.items() if d.action == "retry")
    return Continuation(Earlier(restored, rerun | masked, [*events, *decided]), decided,
                        retried)


def masked_but_needed(plan: Plan, restored: Mapping[str, StepFinished]) -> frozenset[str]:
    """Finished steps whose recorded outputs had secrets masked, and that a step still to run
    or the final checks read: they must run again to have their real outputs."""
    final_reads = {ref.root for check in plan.final_checks for ref, _, _ in iter_refs(check.args)}
    final_reads.update(_output_check_step(check) for check in plan.final_checks)
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


def _output_check_step(check: PlannedCheck) -> str:
    """The step a final ``output`` check reads: its ``field`` (``step_id.path``) names it
    without being a reference. "" for other checks."""
    args = check.args
    field = (dict(args.items).get("field") if isinstance(args, CDict) else
             args.value.get("field") if isinstance(args, Const) and isinstance(args.value, dict)
             else None)
    if isinstance(field, Const):
        field = field.value
    return field.split(".")[0] if check.kind == "output" and isinstance(field, str) else ""


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


def _fails(record: RunRecord, plan: Plan, point: Checkpoint) -> list[StepFinished]:
    """The ``StepFinished`` each ``fail`` decision (a ``manual.default``) stands for: the
    step failed, and its dependents are skipped (an ``on_failure: abort`` step's fail
    ends the run instead: ``abort_decision``)."""
    finished = []
    for step_id, decision in point.decisions.items():
        request = point.requests.get(step_id)
        if decision.action != "fail" or request is None or step_id not in plan.steps:
            continue
        finished.append(_failed(record, plan, request))
    return finished


def _failed(record: RunRecord, plan: Plan, request: InterventionRequested) -> StepFinished:
    step_id = request.step_id
    return StepFinished(
        run_id=record.run_id, step_id=step_id, plugin=plan.steps[step_id].step.plugin
        if step_id in plan.steps else request.plugin, used_plugin=request.plugin,
        status="failed", attempts=request.attempts, duration_s=0.0, error=request.error,
        error_type=request.error_type, hint=request.hint)


def abort_decision(point: Checkpoint, plan: Plan) -> InterventionResolved | None:
    """A decision that ends the run: an abort, or a ``fail`` of a step whose failure
    aborts the run (``on_failure: abort``)."""
    for step_id, decision in point.decisions.items():
        if decision.action == "abort":
            return decision
        planned = plan.steps.get(step_id)
        if decision.action == "fail" and planned is not None \
                and planned.step.on_failure == "abort":
            return decision
    return None


def abort_events(record: RunRecord, plan: Plan, point: Checkpoint,
                 decision: InterventionResolved) -> list[Event]:
    """The end of a run aborted while it waited (a person aborted it, or a step's failure
    was decided): as the engine ends a run when a step aborts it."""
    run_id, step_id = record.run_id, decision.step_id
    ended: list[Event] = [_failed(record, plan, point.requests[step_id])]
    person = decision.action == "abort"
    reason = (f"run aborted by the user at step '{step_id}'" if person
              else f"run aborted: step '{step_id}' failed")
    for other in plan.steps.values():
        if other.id != step_id and other.id not in point.finished:
            ended.append(StepFinished(run_id=run_id, step_id=other.id,
                                      plugin=other.step.plugin, used_plugin=other.step.plugin,
                                      status="skipped", attempts=0, duration_s=0.0,
                                      reason=reason))
    ended.append(RunFinished(run_id=run_id, status="aborted" if person else "failed",
                             duration_s=0.0, message=reason, workflow_id=record.workflow_id))
    return ended
