"""Where a run stands, read from its event log: what ``resume`` and ``runs resolve`` need.

- finished: the last ``StepFinished`` of each step, unless it says ``cancelled`` (the step
  was stopped: it runs again);
- in flight: started (or cancelled) and not finished: it runs again, marked as a rerun;
- waiting: steps whose question (``InterventionRequested``) has no answer yet. A question is
  durable: a run killed while a prompt was open asks it again on resume, without climbing
  the ladder again; ``decisions`` are the answers given (``flowhost runs resolve``, or in
  the run), until the step starts or finishes again;
- a ``SpecReloaded`` (``resume --reload-spec``) takes back the results of the steps it
  names: they run again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    RunStarted,
    SpecReloaded,
    StepFinished,
    StepStarted,
)

FINAL = frozenset({"success", "failed", "aborted", "cancelled"})


@dataclass(slots=True)
class Checkpoint:
    status: str = "running"  # of the last RunFinished; "running" while none came after
    workflow_id: str = ""
    steps: tuple[tuple[str, str, str], ...] = ()  # (id, plugin, purpose), from RunStarted
    finished: dict[str, StepFinished] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    requests: dict[str, InterventionRequested] = field(default_factory=dict)
    decisions: dict[str, InterventionResolved] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def waiting(self) -> dict[str, InterventionRequested]:
        """Questions without an answer, by step."""
        return {sid: request for sid, request in self.requests.items()
                if sid not in self.decisions}

    def rerun(self) -> frozenset[str]:
        """The steps that were in flight when the run stopped, minus those decided on."""
        waiting = self.waiting
        return frozenset(sid for sid in self.in_flight
                         if sid not in self.decisions and sid not in waiting)


def read(events: Iterable[Event]) -> Checkpoint:
    point = Checkpoint()
    for event in events:
        if isinstance(event, StepStarted):
            point.in_flight.add(event.step_id)
            _forget(point, event.step_id)
        elif isinstance(event, StepFinished):
            step_id = event.step_id
            _forget(point, step_id)
            if event.status == "cancelled":
                point.in_flight.add(step_id)
                point.finished.pop(step_id, None)
            else:
                point.finished[step_id] = event
                point.in_flight.discard(step_id)
        elif isinstance(event, InterventionRequested):
            point.requests[event.step_id] = event
            point.decisions.pop(event.step_id, None)
        elif isinstance(event, InterventionResolved):
            if event.step_id in point.requests:
                point.decisions[event.step_id] = event
        elif isinstance(event, RunStarted):
            point.status = "running"
            point.workflow_id = event.workflow_id
            point.steps = point.steps or event.steps
        elif isinstance(event, RunFinished):
            point.status = event.status
        elif isinstance(event, SpecReloaded):
            # The edited spec re-opens the run: these steps' results no longer stand.
            point.status = "running"
            for step_id in (*event.rerun, *event.removed):
                point.finished.pop(step_id, None)
                point.in_flight.discard(step_id)
                _forget(point, step_id)
    return point


def _forget(point: Checkpoint, step_id: str) -> None:
    point.requests.pop(step_id, None)
    point.decisions.pop(step_id, None)
