"""The run's result (CONTRACT §7), computed as a fold over its events.

Because the result is derived from events only, the CLI, a resumed run and the daemon
always agree on what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from flowhost.events import (
    AttemptFailed,
    BreakerChanged,
    Event,
    FinalValidationFinished,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)


class AttemptRecord(BaseModel):
    attempt: int
    plugin: str
    error_type: str
    error_kind: str
    message: str
    hint: str | None = None
    duration_s: float
    delay_s: float | None = None  # the pause before the next attempt, when one was retried


class Intervention(BaseModel):
    error: str
    hint: str | None = None
    action: str | None = None  # None while waiting for an answer
    by: str | None = None
    outputs: dict[str, Any] | None = None


class BreakerRecord(BaseModel):
    plugin: str
    state: str
    failures: int
    at: float


class StepResult(BaseModel):
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
    failed_attempts: list[AttemptRecord] = Field(default_factory=list)
    interventions: list[Intervention] = Field(default_factory=list)


class Learnings(BaseModel):
    pattern_used: str
    modifications: list[str] = Field(default_factory=list)
    success: bool


class RunResult(BaseModel):
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


def fold(events: Iterable[Event], *, pattern: str | None = None) -> RunResult:
    steps: dict[str, StepResult] = {}
    outputs: dict[str, Any] = {}
    final: list[dict[str, Any]] = []
    tests: dict[str, int] | None = None
    workflow_id = run_id = ""
    status = "running"
    duration = 0.0
    started_at = finished_at = None
    modifications: list[str] = []
    breakers: list[BreakerRecord] = []
    for event in events:
        if isinstance(event, RunStarted):
            workflow_id, run_id, started_at = event.workflow_id, event.run_id, event.ts
            for step_id, plugin, _purpose in event.steps:
                steps.setdefault(step_id, StepResult(id=step_id, plugin=plugin,
                                                     used_plugin=plugin, status="pending"))
        elif isinstance(event, StepStarted):
            steps[event.step_id].status = "running"
            if event.rerun:
                steps[event.step_id].rerun_after_interruption = True
        elif isinstance(event, AttemptFailed):
            steps[event.step_id].failed_attempts.append(AttemptRecord(
                attempt=event.attempt, plugin=event.plugin, error_type=event.error_type,
                error_kind=event.error_kind, message=event.message, hint=event.hint,
                duration_s=round(event.duration_s, 4)))
        elif isinstance(event, RetryScheduled):
            attempts = steps[event.step_id].failed_attempts
            if attempts:
                attempts[-1].delay_s = round(event.delay_s, 4)
        elif isinstance(event, InterventionRequested):
            steps[event.step_id].interventions.append(
                Intervention(error=event.error, hint=event.hint))
            steps[event.step_id].status = "waiting"
        elif isinstance(event, InterventionResolved):
            record = steps[event.step_id]
            if not record.interventions or record.interventions[-1].action is not None:
                record.interventions.append(Intervention(error="(decided later)"))
            answer = record.interventions[-1]
            answer.action, answer.by, answer.outputs = event.action, event.by, event.outputs
            record.status = "running"
            if event.action != "abort" or event.by != "policy":
                modifications.append(f"Step {event.step_id}: {event.action} chosen by "
                                     f"{event.by}")
        elif isinstance(event, BreakerChanged):
            breakers.append(BreakerRecord(plugin=event.plugin, state=event.state,
                                          failures=event.failures, at=event.ts))
        elif isinstance(event, StepFinished):
            record = steps[event.step_id]
            record.status = event.status
            record.used_plugin = event.used_plugin
            record.attempts = event.attempts
            record.cached = event.cached
            record.duration_s = round(event.duration_s, 4)
            record.validation = [r.to_json() for r in event.validation]
            record.error, record.error_type = event.error, event.error_type
            record.hint, record.reason = event.hint, event.reason
            if event.status == "success" and event.outputs is not None:
                outputs[event.step_id] = event.outputs
            if event.status == "success" and event.used_plugin != event.plugin:
                modifications.append(f"Used {event.used_plugin} instead of {event.plugin} "
                                     f"(step {event.step_id})")
        elif isinstance(event, FinalValidationFinished):
            final = [r.to_json() for r in event.results]
            tests = event.test_results
        elif isinstance(event, RunFinished):
            status, duration, finished_at = event.status, event.duration_s, event.ts
    records = list(steps.values())
    return RunResult(
        workflow_id=workflow_id,
        run_id=run_id,
        status=status,
        execution_time_s=round(duration, 3),
        steps_completed=sum(1 for r in records if r.status == "success"),
        steps_failed=sum(1 for r in records if r.status == "failed"),
        steps_skipped=sum(1 for r in records if r.status == "skipped"),
        steps=records,
        outputs=outputs,
        final_validation=final,
        test_results=tests,
        learnings=Learnings(pattern_used=pattern or workflow_id, modifications=modifications,
                            success=status == "success"),
        circuit_breakers=breakers,
        started_at=started_at,
        finished_at=finished_at,
    )
