"""The run's result (CONTRACT §7), computed as a fold over its events.

Because the result is derived from events only, the CLI, a resumed run and the daemon
always agree on what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowhost.events import (
    AttemptFailed,
    BreakerChanged,
    Event,
    FallbackChosen,
    FinalValidationFinished,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    SpecReloaded,
    StepFinished,
    StepStarted,
)

# The result's models build their validators when a result is first made: most processes
# (`flowhost run` without --json-out, the daemon's workers) never make one, and building
# them costs a few milliseconds of every process's start.
_DEFERRED = ConfigDict(defer_build=True)


class AttemptRecord(BaseModel):
    model_config = _DEFERRED

    attempt: int
    plugin: str
    error_type: str
    error_kind: str
    message: str
    hint: str | None = None
    duration_s: float
    delay_s: float | None = None  # the pause before the next attempt, when one was retried
    traceback: str | None = None  # an unexpected exception's, from the plugin's frames


class Intervention(BaseModel):
    model_config = _DEFERRED

    error: str
    hint: str | None = None
    action: str | None = None  # None while waiting for an answer
    by: str | None = None
    outputs: dict[str, Any] | None = None
    # Answered while no process ran the run (`runs resolve`, the daemon's ResolveIntervention
    # to a parked run): recorded, not applied yet; the next `resume` (or worker) applies it.
    pending: bool = False


class BreakerRecord(BaseModel):
    model_config = _DEFERRED

    plugin: str
    state: str
    failures: int
    at: float


class StepResult(BaseModel):
    model_config = _DEFERRED

    id: str
    plugin: str
    used_plugin: str
    status: str  # success | failed | skipped | cancelled | pending | running
    attempts: int = 0
    cached: bool = False
    duration_s: float = 0.0
    validation: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    hint: str | None = None
    reason: str | None = None
    rerun_after_interruption: bool = False
    # Which of the step's fallbacks gave its result (1-based), None for the primary: also
    # when the fallback is the same plugin with other inputs, which used_plugin cannot show.
    used_fallback: int | None = None
    # run again by `resume --reload-spec`: its definition changed, or one it depends on did
    rerun_after_spec_change: bool = False
    # The traceback of the exception it failed with, when that was a bug in the plugin
    traceback: str | None = None
    failed_attempts: list[AttemptRecord] = Field(default_factory=list)
    interventions: list[Intervention] = Field(default_factory=list)


class Learnings(BaseModel):
    model_config = _DEFERRED

    pattern_used: str
    modifications: list[str] = Field(default_factory=list)
    success: bool


class RunResult(BaseModel):
    model_config = _DEFERRED

    workflow_id: str
    run_id: str
    status: str
    execution_time_s: float
    steps_completed: int
    steps_failed: int
    steps_skipped: int
    steps: list[StepResult]
    outputs: dict[str, Any]
    final_validation: list[dict[str, Any]]
    test_results: dict[str, int] | None
    learnings: Learnings
    circuit_breakers: list[BreakerRecord] = Field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    # "running", but no process runs it any more (set where that is known: `runs show`).
    interrupted: bool = False


class _Fold:
    """Accumulates the result, one event at a time."""

    def __init__(self) -> None:
        self.steps: dict[str, StepResult] = {}
        self.outputs: dict[str, Any] = {}
        self.final: list[dict[str, Any]] = []
        self.tests: dict[str, int] | None = None
        self.workflow_id = self.run_id = ""
        self.status = "running"
        self.duration = 0.0  # of the processes that ran this run, summed
        self._process_start: float | None = None  # of the process whose events come now
        self._last_ts = 0.0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.modifications: list[str] = []
        self.breakers: list[BreakerRecord] = []
        self._earlier_attempts: dict[str, int] = {}
        self._decided: set[str] = set()  # steps with an answer no process has applied yet
        self._fallbacks: dict[str, FallbackChosen] = {}  # step -> the fallback it is on

    def add(self, event: Event) -> None:
        cls = type(event)
        handler = _HANDLERS.get(cls)
        if handler is None:
            handler = _HANDLERS[cls] = _handler_for(cls)
        if handler is not None:
            handler(self, event)
        self._last_ts = event.ts

    def _run_started(self, event: RunStarted) -> None:
        self.duration += self._open_time()  # an earlier process died without RunFinished
        self._process_start = event.ts
        self.workflow_id, self.run_id = event.workflow_id, event.run_id
        if self.started_at is None:
            self.started_at = event.ts
        for step_id, plugin, _purpose in event.steps:
            self.steps.setdefault(step_id, StepResult(
                id=step_id, plugin=plugin, used_plugin=plugin, status="pending"))

    def _step_started(self, event: StepStarted) -> None:
        record = self.steps[event.step_id]
        _set(record, status="running")
        if self._fallbacks:
            self._fallbacks.pop(event.step_id, None)  # the ladder starts again
        if self._decided:
            self._applied(event.step_id)
        # Attempts an earlier process made (a resume, a retry decided with `runs
        # resolve`): this process counts its own from 1 again.
        self._earlier_attempts[event.step_id] = len(record.failed_attempts)
        if event.rerun:
            record.rerun_after_interruption = True

    def _attempt_failed(self, event: AttemptFailed) -> None:
        self.steps[event.step_id].failed_attempts.append(AttemptRecord(
            attempt=event.attempt, plugin=event.plugin, error_type=event.error_type,
            error_kind=event.error_kind, message=event.message, hint=event.hint,
            duration_s=round(event.duration_s, 4), traceback=event.traceback))

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        attempts = self.steps[event.step_id].failed_attempts
        if attempts:
            attempts[-1].delay_s = round(event.delay_s, 4)

    def _intervention_requested(self, event: InterventionRequested) -> None:
        record = self.steps[event.step_id]
        record.interventions.append(Intervention(error=event.error, hint=event.hint))
        record.status = "waiting"

    def _fallback_chosen(self, event: FallbackChosen) -> None:
        self._fallbacks[event.step_id] = event

    def _spec_reloaded(self, event: SpecReloaded) -> None:
        parts = []
        if event.changed:
            parts.append(f"changed: {', '.join(event.changed)}")
        if event.rerun:
            parts.append(f"run again: {', '.join(event.rerun)}")
        if event.added:
            parts.append(f"added: {', '.join(event.added)}")
        if event.removed:
            parts.append(f"removed: {', '.join(event.removed)}")
        self.modifications.append(f"Spec reloaded from {event.path}" + (
            f" ({'; '.join(parts)})" if parts else " (no step changed)"))
        for step_id in event.rerun:
            if (record := self.steps.get(step_id)) is not None:
                _set(record, status="pending", rerun_after_spec_change=True)
        for step_id in event.removed:
            self.steps.pop(step_id, None)
            self.outputs.pop(step_id, None)
        self.status = "running"

    def _breaker_changed(self, event: BreakerChanged) -> None:
        self.breakers.append(BreakerRecord(plugin=event.plugin, state=event.state,
                                           failures=event.failures, at=event.ts))

    def _final_validation(self, event: FinalValidationFinished) -> None:
        self.final = [r.to_json() for r in event.results]
        self.tests = event.test_results

    def _run_finished(self, event: RunFinished) -> None:
        self.status, self.finished_at = event.status, event.ts
        self.duration += event.duration_s
        self._process_start = None

    def _open_time(self) -> float:
        """The time of a process not (yet) finished: up to its last event."""
        if self._process_start is None:
            return 0.0
        return max(self._last_ts - self._process_start, 0.0)

    def _resolved(self, event: InterventionResolved) -> None:
        record = self.steps[event.step_id]
        if not record.interventions or record.interventions[-1].action is not None:
            record.interventions.append(Intervention(error="(decided later)"))
        answer = record.interventions[-1]
        answer.action, answer.by, answer.outputs = event.action, event.by, event.outputs
        if event.action == "retry":
            self._fallbacks.pop(event.step_id, None)  # the ladder starts again
        if self._process_start is None and self.status == "waiting":
            # The run is parked: the answer waits for a process to take it on.
            answer.pending = True
            self._decided.add(event.step_id)
        else:
            record.status = "running"
        # (`--on-manual fail` changes nothing: it is what happens without level 3; it was
        # recorded as an abort by "policy" before "fail" was an answer of its own)
        if event.by != "policy" or event.action not in ("fail", "abort"):
            self.modifications.append(
                f"Step {event.step_id}: {event.action} chosen by {event.by}")

    def _applied(self, step_id: str) -> None:
        if step_id in self._decided:
            self._decided.discard(step_id)
            for answer in self.steps[step_id].interventions:
                answer.pending = False

    def _finished(self, event: StepFinished) -> None:
        record = self.steps[event.step_id]
        if self._decided:
            self._applied(event.step_id)
        _set(record, status=event.status, used_plugin=event.used_plugin,
             # At least the failed ones recorded: a step cancelled while it waited to
             # retry reports no attempt of its own.
             attempts=max(event.attempts + self._earlier_attempts.get(event.step_id, 0),
                          len(record.failed_attempts)),
             cached=event.cached, duration_s=round(event.duration_s, 4),
             validation=[r.to_json() for r in event.validation] if event.validation else [],
             error=event.error, error_type=event.error_type, hint=event.hint,
             reason=event.reason)
        if event.status == "failed" and record.failed_attempts:
            last = record.failed_attempts[-1]
            if last.traceback is not None and last.error_type == event.error_type:
                record.traceback = last.traceback
        if event.outputs is not None and event.status in ("success", "skipped"):
            self.outputs[event.step_id] = event.outputs
        fallback = self._fallbacks.pop(event.step_id, None) if self._fallbacks else None
        if event.status != "success":
            return
        if event.used_plugin != event.plugin:
            self.modifications.append(
                f"Used {event.used_plugin} instead of {event.plugin}")  # CONTRACT §5, as is
        elif fallback is not None:  # the same plugin, called again with the fallback's inputs
            self.modifications.append(
                f"Used {event.plugin} with the inputs of fallback {fallback.index or '?'} "
                f"instead of its own (step {event.step_id})")
        if fallback is not None:
            record.used_fallback = fallback.index or None

    def result(self, pattern: str | None) -> RunResult:
        records = list(self.steps.values())
        return RunResult(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            status=self.status,
            execution_time_s=round(self.duration + self._open_time(), 3),
            steps_completed=sum(1 for r in records if r.status == "success"),
            steps_failed=sum(1 for r in records if r.status == "failed"),
            steps_skipped=sum(1 for r in records if r.status == "skipped"),
            steps=records,
            outputs=self.outputs,
            final_validation=self.final,
            test_results=self.tests,
            learnings=Learnings(pattern_used=pattern or self.workflow_id,
                                modifications=self.modifications,
                                success=self.status == "success"),
            circuit_breakers=self.breakers,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


def _set(record: StepResult, **fields: Any) -> None:
    """Set fields of a record in one go. The values come from events, already of the fields'
    types, and assignments are not validated anyway: this skips pydantic's ``__setattr__``,
    which costs more than the rest of folding a step (the fields still count as set for
    nothing that reads a result: dumps and comparisons look at the values only)."""
    record.__dict__.update(fields)


_Handler = Callable[[_Fold, Any], None]
# What folding does with each type of event (the others only move the clock on).
_BY_TYPE: dict[type[Event], _Handler] = {
    RunStarted: _Fold._run_started,
    StepStarted: _Fold._step_started,
    AttemptFailed: _Fold._attempt_failed,
    RetryScheduled: _Fold._retry_scheduled,
    FallbackChosen: _Fold._fallback_chosen,
    SpecReloaded: _Fold._spec_reloaded,
    InterventionRequested: _Fold._intervention_requested,
    InterventionResolved: _Fold._resolved,
    BreakerChanged: _Fold._breaker_changed,
    StepFinished: _Fold._finished,
    FinalValidationFinished: _Fold._final_validation,
    RunFinished: _Fold._run_finished,
}
_HANDLERS: dict[type, _Handler | None] = dict(_BY_TYPE)


def _handler_for(cls: type) -> _Handler | None:
    """The handler of the nearest class ``cls`` derives from (a subclass of an event folds
    as that event), or None."""
    return next((_BY_TYPE[base] for base in cls.__mro__ if base in _BY_TYPE), None)


def fold(events: Iterable[Event], *, pattern: str | None = None) -> RunResult:
    """The result of a run from its events (of one process, or of several: a resume)."""
    folder = _Fold()
    for event in events:
        folder.add(event)
    return folder.result(pattern)


def run_time(events: Iterable[Event]) -> float:
    """The seconds the processes of a run took, unrounded (``execution_time_s`` is this,
    rounded to the millisecond)."""
    folder = _Fold()
    for event in events:
        folder.add(event)
    return folder.duration + folder._open_time()
