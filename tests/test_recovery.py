"""The ladder's decisions, table-tested: a pure function of failure, history and policy."""

from __future__ import annotations

import pytest

from flowhost.breaker import Breakers
from flowhost.hints import HintRegistry, choose_hint
from flowhost.recovery import Decision, backoff, decide
from flowhost.spec import BreakerPolicy, RetryPolicy

POLICY = RetryPolicy(max_attempts=3, initial_delay=2, multiplier=2, max_delay=30)


@pytest.mark.parametrize(
    ("kind", "attempt", "fallbacks", "manual", "retry_after", "expected"),
    [
        ("transient", 1, 0, True, None, Decision("retry", 2.0)),
        ("transient", 2, 0, True, None, Decision("retry", 4.0)),
        ("transient", 3, 1, True, None, Decision("fallback")),
        ("transient", 3, 0, True, None, Decision("manual")),
        ("transient", 3, 0, False, None, Decision("give_up")),
        ("timeout", 1, 0, True, None, Decision("retry", 2.0)),
        ("validation", 2, 0, True, None, Decision("retry", 4.0)),
        ("permanent", 1, 1, True, None, Decision("fallback")),
        ("permanent", 1, 0, True, None, Decision("manual")),
        ("permanent", 1, 0, False, None, Decision("give_up")),
        ("intervention", 1, 2, True, None, Decision("manual")),
        ("intervention", 1, 2, False, None, Decision("give_up")),
        ("transient", 1, 0, True, 9.5, Decision("retry", 9.5)),  # rate limit wins
        ("transient", 2, 0, True, 1.0, Decision("retry", 4.0)),  # backoff wins
    ],
)
def test_decide(kind: str, attempt: int, fallbacks: int, manual: bool,
                retry_after: float | None, expected: Decision) -> None:
    assert decide(kind=kind, attempt=attempt, policy=POLICY,  # type: ignore[arg-type]
                  fallbacks_left=fallbacks, manual=manual, retry_after=retry_after) == expected


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1, multiplier=3, max_delay=10)
    assert [backoff(policy, n, lambda: 1.0) for n in range(1, 5)] == [1, 3, 9, 10]
    jittered = RetryPolicy(max_attempts=3, initial_delay=4, jitter=True)
    assert backoff(jittered, 1, lambda: 0.25) == 1.0
    assert backoff(jittered, 2, lambda: 0.5) == 4.0


def test_no_retry_policy_means_one_attempt() -> None:
    assert decide(kind="transient", attempt=1, policy=RetryPolicy(max_attempts=1),
                  fallbacks_left=0, manual=False) == Decision("give_up")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    breakers = Breakers(BreakerPolicy(failures=2, reset_after=10), clock)
    assert breakers.allow("p") == (True, None)
    assert breakers.record("p", ok=False) is None
    assert breakers.record("p", ok=False) == ("p", "open", 2)
    assert breakers.allow("p") == (False, None)
    clock.now = 9.9
    assert breakers.allow("p") == (False, None)
    clock.now = 10.0
    assert breakers.allow("p") == (True, ("p", "half-open", 2))
    assert breakers.allow("p") == (False, None)  # one probe at a time
    assert breakers.record("p", ok=False) == ("p", "open", 3)  # the probe failed
    clock.now = 20.0
    assert breakers.allow("p")[0] is True
    assert breakers.record("p", ok=True) == ("p", "closed", 0)
    assert breakers.allow("p") == (True, None)


def test_breaker_success_resets_the_count_and_other_plugins_are_independent() -> None:
    breakers = Breakers(BreakerPolicy(failures=2, reset_after=10), FakeClock())
    breakers.record("p", ok=False)
    breakers.record("p", ok=True)
    assert breakers.record("p", ok=False) is None
    assert breakers.record("q", ok=False) is None
    assert breakers.state("p") == breakers.state("q") == "closed"


def test_breaker_off_by_default() -> None:
    breakers = Breakers(None)
    for _ in range(100):
        assert breakers.record("p", ok=False) is None
    assert breakers.allow("p") == (True, None)


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("TransientError", "Error 111 connecting to redis: Connection refused",
         "Start Redis: redis-server --daemonize yes"),
        ("ConnectionRefusedError", "[Errno 111] Connection refused", "Start the service"),
        ("PermissionError", "[Errno 13] Permission denied: '/srv/app/run.sh'",
         "chmod u+rwx /srv/app/run.sh"),
        ("ModuleNotFoundError", "No module named 'fastapi.routing'", "pip install fastapi"),
        ("RuntimeError", "this plugin requires pydantic>=2.6",
         "pip install --upgrade 'pydantic>=2.6'"),
        ("ValueError", "bad value", None),
    ],
)
def test_builtin_hints(error_type: str, message: str, expected: str | None) -> None:
    hint = HintRegistry(load_entry_points=False).hint_for(error_type, message)
    if expected is None:
        assert hint is None
    else:
        assert hint is not None and expected in hint


def test_hint_precedence() -> None:
    """The error's own hint and the step's sit side by side; a rule's guess only without."""
    registry = HintRegistry(load_entry_points=False)
    refused = "connection refused"
    assert choose_hint("from error", "from step", registry, "E", refused) == \
        "from error; from step"
    assert choose_hint("from error", None, registry, "E", refused) == "from error"
    assert choose_hint(None, "from step", registry, "E", refused) == "from step"
    assert choose_hint(None, None, registry, "E", refused) is not None


def test_a_crashing_hint_rule_is_ignored() -> None:
    def broken(error_type: str, message: str) -> str | None:
        raise RuntimeError("bug in a third-party rule")

    registry = HintRegistry((broken,), load_entry_points=False)
    assert registry.hint_for("E", "anything") is None
