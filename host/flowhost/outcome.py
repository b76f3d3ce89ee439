"""How one step's call ended (``CallOutcome``, what the ladder hands the engine), and the
``StepFinished`` event that records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from flowhost.events import CheckResult, StepFinished
from flowhost.redact import Redactor

# success: outputs (the plugin's, or the cache's); failed: the ladder gave up; cancelled:
# the run stopped it; skipped: a decision skipped it (outputs, if any, stand in for the
# step's); aborted: a person's (or --on-manual abort's) decision stops the whole run, the
# step counting as failed; waiting: the decision is left to someone later.
Ending = Literal["success", "failed", "cancelled", "skipped", "aborted", "waiting"]


@dataclass(slots=True)
class CallOutcome:
    """What the ladder hands the engine for one step: how its calls ended."""

    ending: Ending
    used_plugin: str
    attempts: int
    outputs: dict[str, Any] | None = None
    validation: tuple[CheckResult, ...] = ()
    error: str | None = None
    error_type: str | None = None
    hint: str | None = None
    cached: bool = False  # a success that came from the cache
    decided_by: str | None = None  # who decided a skip, an abort or a wait
    escalate: bool = False  # the ladder's own note: a human should decide (level 3)

    @property
    def ok(self) -> bool:
        return self.ending == "success"


def finished_event(run_id: str, step_id: str, plugin: str, outcome: CallOutcome,
                   duration: float, redactor: Redactor, cancel_reason: str) -> StepFinished:
    """The ``StepFinished`` of an outcome (not ``waiting``: that step is not finished), its
    outputs with secrets masked (and marked so: masked outputs cannot stand in for the
    real ones on resume)."""
    ending = outcome.ending
    if ending == "success":
        given = outcome.outputs
        assert given is not None
        shown = redactor.data(given) if redactor else given
        # Positional: every step that succeeds comes here, and CPython matches keywords at
        # about twice the cost.
        return StepFinished(run_id, step_id, plugin, outcome.used_plugin, "success",
                            outcome.attempts, duration, shown, outcome.validation,
                            outcome.cached, shown is not given and shown != given)
    if ending == "cancelled":
        return StepFinished(run_id=run_id, step_id=step_id, plugin=plugin, used_plugin=plugin,
                            status="cancelled", attempts=0, duration_s=duration,
                            reason=cancel_reason)
    if ending == "skipped":
        given = outcome.outputs
        how = "with outputs given by" if given is not None else "by"
        return StepFinished(
            run_id=run_id, step_id=step_id, plugin=plugin, used_plugin=outcome.used_plugin,
            status="skipped", attempts=outcome.attempts, duration_s=duration,
            outputs=redactor.data(given) if given is not None and redactor else given,
            error=outcome.error, error_type=outcome.error_type, hint=outcome.hint,
            validation=outcome.validation,
            reason=f"skipped {how} {outcome.decided_by} after: {outcome.error}")
    return StepFinished(run_id=run_id, step_id=step_id, plugin=plugin,
                        used_plugin=outcome.used_plugin, status="failed",
                        attempts=outcome.attempts, duration_s=duration, error=outcome.error,
                        error_type=outcome.error_type, hint=outcome.hint,
                        validation=outcome.validation)
