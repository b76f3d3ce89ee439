"""The recovery ladder's decisions, as pure functions of the failure, the history and the
policy: no clock, no I/O, so every rule is table-tested (tests/test_recovery.py).

After a failed attempt: retry the same plugin (level 1) while the error is worth retrying
and the budget allows, else move to the next fallback plugin (level 2), else ask a human
(level 3), else give up and let the step's ``on_failure`` decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from flowhost.spec import RetryPolicy

FailureKind = Literal["transient", "permanent", "intervention", "validation", "timeout"]
# What the ladder does next after a failed attempt.
Move = Literal["retry", "fallback", "manual", "give_up"]

# The longest pause a plugin's ``retry_after`` can ask for (as long as the spec's own
# largest ``max_delay``).
MAX_RETRY_AFTER_S = 86400.0

# What a retry of the same plugin with the same inputs can fix.
RETRYABLE: frozenset[str] = frozenset({"transient", "timeout", "validation"})


@dataclass(frozen=True, slots=True)
class Decision:
    action: Move
    delay_s: float = 0.0


def backoff(policy: RetryPolicy, failed_attempt: int, rand: Callable[[], float]) -> float:
    """Pause after attempt ``failed_attempt`` (1-based): exponential, capped, full jitter."""
    delay = policy.delay_before(failed_attempt + 1)
    return rand() * delay if policy.jitter else delay


def decide(
    *,
    kind: FailureKind,
    attempt: int,
    policy: RetryPolicy,
    fallbacks_left: int,
    manual: bool,
    retry_after: float | None = None,
    rand: Callable[[], float] = lambda: 1.0,
) -> Decision:
    """What to do after attempt number ``attempt`` of the current plugin failed."""
    if kind == "intervention":
        return Decision("manual") if manual else Decision("give_up")
    if kind in RETRYABLE and attempt < policy.max_attempts:
        delay = backoff(policy, attempt, rand)
        if retry_after is not None and not math.isnan(retry_after):
            # The plugin knows its rate limit better, within reason: a remote plugin can send
            # any number, and a step must not sleep for ever.
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return Decision("retry", delay)
    if fallbacks_left > 0:
        return Decision("fallback")
    return Decision("manual") if manual else Decision("give_up")
