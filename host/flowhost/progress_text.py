"""What both progress views say (the plain lines of ``flowhost.progress`` and the live view
of ``flowhost.live``): the tally of a run's steps, and the wording of durations, the
recovery ladder's events, a step's extras and a run's test results, so the two views
agree word for word.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from flowhost.events import (
    AttemptFailed,
    BreakerChanged,
    CacheRejected,
    Event,
    FallbackChosen,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from flowhost.tracebacks import raised_at


def ladder_line(e: Event, step: str) -> str | None:
    """The text both views show for the recovery ladder's events."""
    match e:
        case RetryScheduled():
            budget = (f", {e.plugin_attempt} of {e.max_attempts} with {e.plugin}"
                      if e.max_attempts else "")
            return f"{step}: retrying {e.plugin} in {human_duration(e.delay_s)} " \
                   f"(attempt {e.next_attempt}{budget})"
        case FallbackChosen():
            if e.fallback == e.plugin:  # the same plugin, with the fallback's own inputs
                which = f"fallback {e.index}" if e.index else "a fallback"
                return f"{step}: falling back to {e.plugin} with the inputs of {which} " \
                       f"({e.reason})"
            return f"{step}: falling back to {e.fallback} instead of {e.plugin} ({e.reason})"
        case InterventionRequested():
            hint = f" — hint: {e.hint}" if e.hint else ""
            tries = f"{e.attempts} attempt{'s' if e.attempts != 1 else ''}"
            return f"{step}: needs a human decision after {tries}: " \
                   f"{e.error_type}: {e.error}{hint}"
        case InterventionResolved():
            given = " with outputs" if e.outputs else ""
            if e.by == "policy":  # nobody was asked: say which flag decided, and the way out
                return (f"{step}: decision {e.action}{given}, decided by --on-manual "
                        f"{e.action}; use --on-manual wait to answer later")
            return f"{step}: decision {e.action}{given} (by {e.by})"
        case CacheRejected():
            return f"{step}: its cached result no longer passes its checks ({e.reason}); " \
                   "running it"
        case BreakerChanged():
            return f"circuit breaker of {e.plugin} is now {e.state}" + (
                f" after {e.failures} consecutive failures" if e.state == "open" else "")
    return None


def human_duration(seconds: float) -> str:
    """850ms, 12.3s, 2m 05s, 1h 02m, 3d 04h."""
    if not math.isfinite(seconds) or abs(seconds) > 1e12:  # NaN, inf, or past any wait
        return "forever" if seconds > 0 else "0ms"
    if (ms := round(seconds * 1000)) < 1000:
        return f"{max(ms, 0)}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Tally:
    """What both views need: each step's "i/N", plugin and purpose; the finished counts."""

    def __init__(self, carried: Iterable[str | StepFinished] = ()) -> None:
        self.steps: dict[str, tuple[int, str, str]] = {}  # id -> (index, plugin, purpose)
        # Statuses of steps an earlier process of this run finished (a resume), so the
        # summary speaks of the whole run.
        earlier = list(carried)
        self.carried: Counter[str] = Counter(
            e.status if isinstance(e, StepFinished) else e for e in earlier)
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.title = ""
        # Steps that failed or were skipped, with why (those of earlier processes too, when
        # they are known): a run that succeeds all the same (on_failure: continue, a
        # person's skip) must not end as a clean one.
        self.unclean: list[str] = []
        for e in earlier:
            if isinstance(e, StepFinished):
                self._note(e)

    def run_started(self, e: RunStarted) -> None:
        self.steps = {sid: (i, plug, purpose) for i, (sid, plug, purpose) in enumerate(e.steps, 1)}
        self.counts = Counter(self.carried)
        self.total = e.total_steps or len(e.steps)
        self.title = e.description or e.workflow_id

    def step_started(self, e: StepStarted) -> None:
        self.steps[e.step_id] = (e.index, e.plugin, e.purpose)
        self.total = e.total or self.total

    def finished(self, e: StepFinished) -> None:
        self.counts[e.status] += 1
        self._note(e)

    def _note(self, e: StepFinished) -> None:
        if e.status in ("failed", "skipped"):
            why = (e.error or e.error_type or "unknown error") if e.status == "failed" \
                else (e.reason or "")
            self.unclean.append(f"{e.step_id} ({e.plugin}) {e.status}" + (
                f": {clip(why)}" if why else ""))

    def caveats(self) -> list[str]:
        """What kept a successful run from being clean, a line per step (at most a few)."""
        shown = self.unclean[:CAVEATS]
        more = len(self.unclean) - len(shown)
        return [*shown, f"and {more} more (flowhost runs show)"] if more else shown

    def plugin(self, step_id: str) -> str | None:
        """The plugin of a step announced (None: not announced)."""
        known = self.steps.get(step_id)
        return known[1] if known is not None else None

    def get(self, step_id: str, plugin: str = "") -> tuple[str, str, str]:
        """("i/N", plugin, purpose); a step never announced shows "?" and its id."""
        index, known_plugin, purpose = self.steps.get(step_id, (0, plugin, step_id))
        return f"{index or '?'}/{self.total or '?'}", known_plugin, purpose or step_id

    def rate(self) -> str:
        done = self.counts["success"]
        return f"{done * 100 // self.total if self.total else 100}% ({done}/{self.total} steps)"

    def others(self) -> str:
        statuses = ("failed", "skipped", "cancelled")
        return ", ".join(f"{self.counts[s]} {s}" for s in statuses if self.counts[s])


CAVEATS = 10  # steps named at most in a run's closing words


def clip(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def extras(e: StepFinished) -> str:
    used = e.used_plugin and e.used_plugin != e.plugin
    return (
        (", cached" if e.cached else "")
        + (f", used {e.used_plugin} instead of {e.plugin}" if used else "")
        + (f", attempt {e.attempts}" if e.attempts > 1 else "")
    )


def took(e: RunFinished, earlier_s: float) -> str:
    """How long the run took: this process's time, and after a resume the whole run's too
    (the result's ``execution_time_s``, summed over its processes), so the two agree."""
    if earlier_s <= 0:
        return human_duration(e.duration_s)
    whole = round(earlier_s + e.duration_s, 3)
    return (f"{human_duration(e.duration_s)} in this process, {human_duration(whole)} over "
            "the whole run (execution_time_s)")


def raised(e: AttemptFailed) -> str:
    """ " (raised at file.py:42 in invoke)" for a plugin's unexpected error, else ""."""
    where = raised_at(e.traceback) if e.traceback else None
    return f" (raised at {where})" if where else ""


def tests_line(results: dict[str, int]) -> str:
    rest = [f"{v} {k}" for k, v in results.items() if k not in {"passed", "failed", "total"} and v]
    parts = [f"{results.get('passed', 0)} passed", f"{results.get('failed', 0)} failed", *rest]
    return "Tests: " + ", ".join(parts)
