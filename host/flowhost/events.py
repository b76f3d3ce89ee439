"""The typed events a run emits. The engine only emits; everything else listens.

A run's whole story is its event list: the result JSON, the progress view, the store and
the metrics are all folds over it, so they can never disagree about what happened.
Events are slotted dataclasses, treated as immutable once emitted (not ``frozen=True``,
which makes construction three times slower on the engine's hot path); they hold only
JSON-friendly values (secrets already redacted). Most take keyword arguments only; the three
every step emits (``StepStarted``, ``AttemptStarted``, ``StepFinished``) also take positional
ones, which the engine uses because CPython matches keywords at about twice the cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

StepStatus = Literal["success", "failed", "skipped", "cancelled"]
Decision = Literal["retry", "skip", "abort"]  # what a person answers
# What an answer records: a decision, or "fail" (the step fails and its `on_failure` decides:
# `--on-manual fail`, or a step's `manual.default` once its `manual.timeout` is up).
Decided = Literal["retry", "skip", "abort", "fail"]
RunStatus = Literal["success", "failed", "aborted", "waiting", "running", "cancelled",
                    "interrupted"]


@dataclass(slots=True)
class CheckResult:
    """The outcome of one validation check."""

    kind: str
    passed: bool
    message: str
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "passed": self.passed,
            "message": self.message,
            "duration_s": round(self.duration_s, 4),
        }
        if self.details:
            data["details"] = self.details
        return data


@dataclass(slots=True)
class Event:
    """What every event has: its run, when it happened, its number in the run."""

    run_id: str
    ts: float = field(default_factory=time.time, kw_only=True)
    # 1, 2, 3... per run, without gaps, given by the journal as it takes the event (0: not
    # journaled); the cursor of resume and of streams.
    seq: int = field(default=0, kw_only=True, compare=False)


@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    """A process starts (or resumes) the run: its steps in display order."""

    workflow_id: str
    description: str
    total_steps: int
    steps: tuple[tuple[str, str, str], ...]  # (step id, plugin, purpose) in display order
    resumed: bool = False


@dataclass(slots=True)
class StepStarted(Event):
    """A step begins: its inputs are resolved next, then its first attempt."""

    step_id: str
    plugin: str
    purpose: str
    index: int  # 1-based position in display order
    total: int
    rerun: bool = False  # it was in flight when an earlier process of this run died


@dataclass(slots=True)
class AttemptStarted(Event):
    """An attempt of a plugin begins: the first of the step, a retry, or a fallback's."""

    step_id: str
    plugin: str
    attempt: int
    transport: Literal["local", "grpc"] = "local"


@dataclass(slots=True, kw_only=True)
class StepProgress(Event):
    """A plugin's ``ctx.progress``: how far the call is (0.0 to 1.0)."""

    step_id: str
    fraction: float
    message: str = ""


@dataclass(slots=True, kw_only=True)
class AttemptFailed(Event):
    """One attempt failed, classified (``error_kind``) for the ladder."""

    step_id: str
    plugin: str
    attempt: int
    error_type: str
    error_kind: Literal["transient", "permanent", "intervention", "validation", "timeout"]
    message: str
    hint: str | None
    duration_s: float
    # An unexpected exception's traceback from the plugin's frames on (secrets masked)
    traceback: str | None = None


@dataclass(slots=True, kw_only=True)
class RetryScheduled(Event):
    """Level 1 of the ladder: the next attempt of ``plugin`` starts after ``delay_s``."""

    step_id: str
    plugin: str
    next_attempt: int
    delay_s: float
    # the next attempt within ``plugin``'s own retry budget, and that budget (0: unknown)
    plugin_attempt: int = 0
    max_attempts: int = 0


@dataclass(slots=True, kw_only=True)
class FallbackChosen(Event):
    """Level 2: ``fallback`` replaces ``plugin`` (the one that failed) for this step."""

    step_id: str
    plugin: str
    fallback: str
    reason: str
    index: int = 0  # which of the step's fallbacks (1-based; 0 in runs recorded before)


@dataclass(slots=True, kw_only=True)
class InterventionRequested(Event):
    """Level 3: a human must choose retry, skip or abort for this step."""

    step_id: str
    plugin: str
    error: str
    error_type: str
    hint: str | None
    attempts: int
    # The step's `manual.timeout`: nobody answering by ``ts + timeout_s``, ``default``
    # applies (any process that takes the run then applies it: the deadline is durable).
    timeout_s: float | None = None
    default: Literal["abort", "skip", "fail"] | None = None


@dataclass(slots=True, kw_only=True)
class InterventionResolved(Event):
    """The human's (or the policy's) answer to an ``InterventionRequested``."""

    step_id: str
    action: Decided
    outputs: dict[str, Any] | None = None
    # "user" (a terminal), "policy" (--on-manual), "timeout" (the step's manual.default), or
    # who answered over the API
    by: str = "user"
    plugin: str = ""  # the plugin whose failure was answered
    comment: str = ""  # what the person said with it


@dataclass(slots=True, kw_only=True)
class CacheHit(Event):
    """The step's result came from the cache (its checks are run on it next)."""

    step_id: str
    plugin: str


@dataclass(slots=True, kw_only=True)
class CacheMiss(Event):
    """A cacheable step found no usable cached result: the plugin is called."""

    step_id: str
    plugin: str


@dataclass(slots=True, kw_only=True)
class CacheRejected(Event):
    """A cached result of the step no longer passes its checks: the step runs instead."""

    step_id: str
    plugin: str
    reason: str


@dataclass(slots=True, kw_only=True)
class BreakerChanged(Event):
    """The circuit breaker of a plugin opened, half-opened (one probe) or closed."""

    plugin: str
    state: Literal["open", "half-open", "closed"]
    failures: int


@dataclass(slots=True)
class StepFinished(Event):
    """How a step ended: its outputs, or its error, or why it was skipped."""

    step_id: str
    plugin: str
    used_plugin: str
    status: StepStatus
    attempts: int
    duration_s: float
    outputs: dict[str, Any] | None = None
    validation: tuple[CheckResult, ...] = ()
    cached: bool = False
    # Secrets in ``outputs`` were masked: what is recorded cannot stand in for the real
    # outputs, so a resumed run that still needs them runs the step again.
    redacted: bool = False
    error: str | None = None
    error_type: str | None = None
    hint: str | None = None
    reason: str | None = None  # why a step was skipped or cancelled


@dataclass(slots=True, kw_only=True)
class SpecReloaded(Event):
    """``resume --reload-spec``: the run goes on with its edited spec. ``rerun`` are the
    steps whose results no longer stand (they run again): those whose definition changed,
    what depends on them, and — for a run that had ended — the steps that had not succeeded."""

    path: str
    changed: tuple[str, ...] = ()
    rerun: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class FinalValidationStarted(Event):
    """The workflow's ``final_validation`` checks begin."""

    total_checks: int


@dataclass(slots=True, kw_only=True)
class FinalValidationFinished(Event):
    """The results of the final checks (and of a test run)."""

    results: tuple[CheckResult, ...]
    test_results: dict[str, int] | None = None


@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    """This process's part of the run ended, with the run's status."""

    status: RunStatus
    duration_s: float
    message: str = ""
    workflow_id: str = ""


Listener = Callable[[Event], None]


class EventBus:
    """Delivers each event to every listener, in subscription order, synchronously.

    Synchronous delivery is what makes checkpoints durable: when ``emit`` returns, every
    listener (the store among them) has seen the event, before the engine starts any step
    that depends on it.
    """

    __slots__ = ("_listeners", "history")

    def __init__(self, *, keep_history: bool = True) -> None:
        self._listeners: list[Listener] = []
        self.history: list[Event] | None = [] if keep_history else None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        if self.history is not None:
            self.history.append(event)
        for listener in self._listeners:
            listener(event)
