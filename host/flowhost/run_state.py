"""What a run carries besides its plan: what earlier processes of it left (a resumed run),
and why it stops before its end, when it does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flowhost.events import Event, StepFinished


@dataclass(frozen=True, slots=True)
class Earlier:
    """What earlier processes of a resumed run left: finished steps (never run again), the
    steps in flight when it stopped (run again), and every event they wrote."""

    restored: Mapping[str, StepFinished] = field(default_factory=dict)
    rerun: frozenset[str] = frozenset()
    events: Sequence[Event] = ()


@dataclass(slots=True)
class Stop:
    """Why the run stops before its end, when it does; each way has its own ending."""

    reason: str | None = None  # cancelled (final) or interrupted (resumable): why
    final: bool = True
    aborted_at: str | None = None  # the step whose failure, or a person, aborted the run
    by_person: bool = False
    draining: str | None = None  # no step starts any more; why
    crash: str | None = None  # an error of flowhost's own ended a step's task

    @property
    def halted(self) -> bool:
        """Nothing new starts."""
        return self.reason is not None or self.draining is not None

    def abort_reason(self) -> str:
        if self.by_person:
            return f"run aborted by the user at step '{self.aborted_at}'"
        return f"run aborted: step '{self.aborted_at}' failed"
