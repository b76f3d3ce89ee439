"""Committed events -> samples: the metrics are one more observer of the journal.

``MetricsObserver`` is called with each event of any number of runs (one run in a
``flowhost run`` process; every run the daemon supervises, from its journal). It only
reads the events: it cannot change what a run does, and one that raises is detached by
``flowhost.observers.Guarded`` like any other observer.

The per-event cost is kept small (it runs on the engine's thread for a one-off run): one
dict lookup by event type, label children looked up in dicts of their own (``.labels()``
costs microseconds), and the few per-run facts some samples need (the attempt in flight
and its transport, when a question was asked, which breakers are open) in a small object
per live run, dropped when the run ends.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    BreakerChanged,
    CacheHit,
    CacheMiss,
    CacheRejected,
    Event,
    FallbackChosen,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
)
from flowhost.metrics.families import STEP_BUCKETS, Families

FINAL = frozenset({"success", "failed", "aborted", "cancelled"})
# An attempt still in flight when its step ended: how it counts.
_AT_FINISH = {"success": "success", "failed": "error", "skipped": "cancelled",
              "cancelled": "cancelled"}
# How the gRPC invoker words a call that could not reach the server (not the plugin's own
# UNAVAILABLE, which travels with flowhost's error metadata and reads as the plugin's text).
_UNREACHABLE = re.compile(r"remote plugin [^\n]*?: UNAVAILABLE: ")
# Distinct values a label may take before the rest are counted as OTHER: workflow ids come
# from whoever submits a spec, and a registry must stay bounded whatever they send.
MAX_VALUES = 500
OTHER = "_other"


@dataclass(slots=True)
class _Called:
    """A plugin called over one transport, and the child its successful attempts count in
    (looked up once, not per attempt)."""

    plugin: str
    transport: str
    succeeded: Any


@dataclass(slots=True)
class _Run:
    workflow: str
    started: float  # the ts of its first RunStarted (0: not seen)
    exemplar: dict[str, str]
    attempts: dict[str, _Called] = field(default_factory=dict)  # step: its attempt in flight
    questions: dict[str, tuple[str, float]] = field(default_factory=dict)  # step: plugin, asked
    breakers: set[str] = field(default_factory=set)  # plugins whose breaker is open


class MetricsObserver:
    """Call it with every event, in each run's order (``observe`` a ``Run``, or feed it a
    journal); ``restore`` rebuilds what live runs stand at without counting anything."""

    def __init__(self, families: Families, *, clock: Callable[[], float] = time.time,
                 max_values: int = MAX_VALUES) -> None:
        self.families = families
        self._clock = clock
        self._max_values = max_values
        self._counting = True
        self._runs: dict[str, _Run] = {}
        self._active: set[str] = set()
        self._waiting: set[str] = set()
        self._lock = threading.Lock()  # the open questions, read by a scrape's thread
        self._asked: dict[tuple[str, str], float] = {}  # (run, step): asked at
        self._questions: dict[str, int] = {}  # plugin: open questions
        self._breakers: dict[str, int] = {}  # plugin: runs with its breaker open
        self._seen: dict[str, set[str]] = {"plugin": set(), "workflow": set()}
        self._steps: dict[tuple[str, str], tuple[Any, Any, list[Any]]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}
        self._called: dict[tuple[str, str], _Called] = {}
        families.oldest_question.set_function(self._oldest)
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            StepFinished: self._step_finished, AttemptStarted: self._attempt_started,
            AttemptFailed: self._attempt_failed, RetryScheduled: self._retry,
            FallbackChosen: self._fallback, CacheHit: self._cache_hit,
            CacheMiss: self._cache_miss, CacheRejected: self._cache_rejected,
            InterventionRequested: self._asked_person, InterventionResolved: self._answered,
            BreakerChanged: self._breaker, RunStarted: self._run_started,
            RunFinished: self._run_finished}

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def restore(self, events: Iterable[Event]) -> None:
        """Take in ``events`` committed before this observer existed (a restarted daemon's
        unfinished runs): the gauges and the facts later events need, no counts."""
        self._counting = False
        try:
            for event in events:
                self(event)
        finally:
            self._counting = True

    def forget(self, run_id: str, workflow_id: str) -> None:
        """Let go of a run another process goes on with: what this observer holds of it
        (gauges: active, waiting, open questions, breakers) goes, nothing is counted."""
        self.restore([RunFinished(run_id=run_id, status="cancelled", duration_s=0.0,
                                  workflow_id=workflow_id)])

    # -- labels --------------------------------------------------------------------------
    def _label(self, kind: str, value: str) -> str:
        seen = self._seen[kind]
        if value in seen:
            return value
        if len(seen) >= self._max_values:
            return OTHER
        seen.add(value)
        return value

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached; plugin and workflow values bounded."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _plugin(self, metric: Any, plugin: str, *more: str) -> Any:
        key = (metric, plugin, *more)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self._label("plugin", plugin), *more)
        return child

    def _run(self, event: Event, workflow: str = "") -> _Run:
        run = self._runs.get(event.run_id)
        if run is None:
            run = self._runs[event.run_id] = _Run(
                self._label("workflow", workflow or "unknown"), 0.0,
                {"run_id": event.run_id})
        return run

    # -- steps and attempts --------------------------------------------------------------
    def _step_finished(self, event: StepFinished) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        attempt = run.attempts.pop(event.step_id, None)
        if not self._counting:
            return
        key = (event.plugin, event.status)
        children = self._steps.get(key)
        if children is None:
            families = self.families
            children = self._steps[key] = (self._plugin(families.steps, *key),
                                           self._plugin(families.step_duration, *key),
                                           [None] * (len(STEP_BUCKETS) + 1))
        children[0].inc()
        # A bucket keeps one exemplar: the run's first step in it sets it, the next ones
        # of the same run skip it (an exemplar costs more than the observation itself).
        duration, marks = event.duration_s, children[2]
        slot = bisect_left(STEP_BUCKETS, duration)
        if marks[slot] is run.exemplar:
            children[1].observe(duration)
        else:
            marks[slot] = run.exemplar
            children[1].observe(duration, run.exemplar)
        if attempt is None:
            return
        if event.status != "success":
            self._plugin(self.families.attempts, attempt.plugin, attempt.transport,
                         _AT_FINISH.get(event.status, "cancelled")).inc()
            return
        attempt.succeeded.inc()
        if attempt.transport == "grpc":
            self._plugin(self.families.remote_up, attempt.plugin).set(1)

    def _attempt_started(self, event: AttemptStarted) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        key = (event.plugin, event.transport)
        called = self._called.get(key)
        if called is None:
            called = self._called[key] = _Called(
                event.plugin, event.transport,
                self._plugin(self.families.attempts, *key, "success"))
        run.attempts[event.step_id] = called

    def _attempt_failed(self, event: AttemptFailed) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        called = run.attempts.pop(event.step_id, None)
        transport = called.transport if called is not None else "local"
        if not self._counting:
            return
        self._plugin(self.families.attempts, event.plugin, transport, event.error_kind).inc()
        if transport == "grpc":
            reached = _UNREACHABLE.match(event.message) is None
            self._plugin(self.families.remote_up, event.plugin).set(1 if reached else 0)

    def _retry(self, event: RetryScheduled) -> None:
        if self._counting:
            self._plugin(self.families.retries, event.plugin).inc()

    def _fallback(self, event: FallbackChosen) -> None:
        if self._counting:
            fallback = self._label("plugin", event.fallback)
            self._plugin(self.families.fallbacks, event.plugin, fallback).inc()

    def _cache_hit(self, event: CacheHit) -> None:
        if self._counting:
            self._plugin(self.families.cache_hits, event.plugin).inc()

    def _cache_miss(self, event: CacheMiss) -> None:
        if self._counting:
            self._plugin(self.families.cache_misses, event.plugin).inc()

    def _cache_rejected(self, event: CacheRejected) -> None:
        if self._counting:
            self._plugin(self.families.cache_rejected, event.plugin).inc()

    # -- people ----------------------------------------------------------------------------
    def _asked_person(self, event: InterventionRequested) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        self._close_question(run, event.run_id, event.step_id)  # asked again: one question
        run.questions[event.step_id] = (event.plugin, event.ts)
        with self._lock:
            self._asked[(event.run_id, event.step_id)] = event.ts
        self._count_question(event.plugin, +1)

    def _answered(self, event: InterventionResolved) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        asked = self._close_question(run, event.run_id, event.step_id)
        if not self._counting:
            return
        plugin = event.plugin or (asked[0] if asked is not None else "")
        self._plugin(self.families.interventions, plugin, event.action).inc()
        if asked is not None:
            waited = max(event.ts - asked[1], 0.0)
            self._plugin(self.families.intervention_wait, asked[0]).observe(waited)

    def _close_question(self, run: _Run, run_id: str, step_id: str) -> tuple[str, float] | None:
        asked = run.questions.pop(step_id, None)
        if asked is not None:
            with self._lock:
                self._asked.pop((run_id, step_id), None)
            self._count_question(asked[0], -1)
        return asked

    def _count_question(self, plugin: str, change: int) -> None:
        now = self._questions[plugin] = self._questions.get(plugin, 0) + change
        self._plugin(self.families.interventions_waiting, plugin).set(now)

    def _oldest(self) -> float:
        """The age of the oldest open question (a scrape asks, on its own thread)."""
        with self._lock:
            first = min(self._asked.values(), default=None)
        return 0.0 if first is None else max(self._clock() - first, 0.0)

    # -- breakers --------------------------------------------------------------------------
    def _breaker(self, event: BreakerChanged) -> None:
        run = self._runs.get(event.run_id) or self._run(event)
        if self._counting:
            self._plugin(self.families.breaker_changes, event.plugin, event.state).inc()
        if event.state == "closed":
            if event.plugin in run.breakers:
                run.breakers.discard(event.plugin)
                self._count_breaker(event.plugin, -1)
        elif event.plugin not in run.breakers:
            run.breakers.add(event.plugin)
            self._count_breaker(event.plugin, +1)

    def _count_breaker(self, plugin: str, change: int) -> None:
        now = self._breakers[plugin] = self._breakers.get(plugin, 0) + change
        self._plugin(self.families.breaker_open, plugin).set(now)

    # -- runs ------------------------------------------------------------------------------
    def _run_started(self, event: RunStarted) -> None:
        run = self._run(event, event.workflow_id)
        if not run.started:
            run.started = event.ts
        self._active.add(event.run_id)
        self._waiting.discard(event.run_id)
        self._set_run_gauges()

    def _run_finished(self, event: RunFinished) -> None:
        run = self._run(event, event.workflow_id)
        run.attempts.clear()
        for plugin in run.breakers:  # a breaker lives in the process that ran the run
            self._count_breaker(plugin, -1)
        run.breakers.clear()
        status = event.status
        self._active.discard(event.run_id)
        if status == "waiting":
            self._waiting.add(event.run_id)
        else:
            self._waiting.discard(event.run_id)
        if status in FINAL:
            for step_id in list(run.questions):
                self._close_question(run, event.run_id, step_id)
            del self._runs[event.run_id]
            if self._counting:
                took = event.ts - run.started if run.started else event.duration_s
                self._child(self.families.runs, run.workflow, status).inc()
                self._child(self.families.run_duration, run.workflow, status).observe(
                    max(took, 0.0))
        self._set_run_gauges()

    def _set_run_gauges(self) -> None:
        self.families.runs_active.set(len(self._active))
        self.families.runs_waiting.set(len(self._waiting))

    @property
    def live_runs(self) -> int:
        """Runs it keeps facts about (the live ones): bounded by what is not finished."""
        return len(self._runs)
