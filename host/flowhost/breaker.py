"""A circuit breaker per plugin: after N consecutive failed calls a plugin is "open" and
steps go straight to their fallback; after ``reset_after`` seconds one probe call is let
through ("half-open"): success closes the circuit, failure opens it again.

Time comes from an injected clock, so the state machine is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from flowhost.spec import BreakerPolicy

State = Literal["closed", "open", "half-open"]
Change = tuple[str, State, int]  # (plugin, new state, consecutive failures)


@dataclass(slots=True)
class _Circuit:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False


class Breakers:
    def __init__(self, policy: BreakerPolicy | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, plugin: str) -> tuple[bool, Change | None]:
        """Whether a call to ``plugin`` may go ahead now, and any state change it caused."""
        if self.policy is None:
            return True, None
        circuit = self._circuits.get(plugin)
        if circuit is None or circuit.state == "closed":
            return True, None
        if circuit.state == "open":
            if self.clock() - circuit.opened_at < self.policy.reset_after:
                return False, None
            circuit.state, circuit.probing = "half-open", True
            return True, (plugin, "half-open", circuit.failures)
        # Half-open: exactly one probe at a time.
        if circuit.probing:
            return False, None
        circuit.probing = True
        return True, None

    def record(self, plugin: str, ok: bool) -> Change | None:
        """Account for a finished call; returns the state change, if any."""
        if self.policy is None:
            return None
        circuit = self._circuits.setdefault(plugin, _Circuit())
        if ok:
            was = circuit.state
            circuit.state, circuit.failures, circuit.probing = "closed", 0, False
            return (plugin, "closed", 0) if was != "closed" else None
        circuit.failures += 1
        circuit.probing = False
        if circuit.state == "half-open" or (
            circuit.state == "closed" and circuit.failures >= self.policy.failures
        ):
            circuit.state, circuit.opened_at = "open", self.clock()
            return plugin, "open", circuit.failures
        return None

    def state(self, plugin: str) -> State:
        circuit = self._circuits.get(plugin)
        return circuit.state if circuit else "closed"
