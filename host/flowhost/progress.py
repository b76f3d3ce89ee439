"""The progress view: event listeners that show a run as it happens.

``RichProgress`` (a terminal; in ``flowhost.live``, which imports rich): a live area with
the running steps (spinner, bar, message, elapsed), above which each finished step, failed
attempt and check leaves a permanent line.
``PlainProgress`` (logs, pipes, ``--no-progress``): one timestamped line per event worth
showing. Both only update a little state per event; RichProgress prints and redraws from its
own ticker thread at ~10 Hz, so thousands of fast steps cost a few redraws a second. Text
from events is printed as it is (the engine redacted secrets), never parsed as rich markup.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    BreakerChanged,
    CacheRejected,
    Event,
    FallbackChosen,
    FinalValidationFinished,
    FinalValidationStarted,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
    StepProgress,
    StepStarted,
)
from flowhost.tracebacks import raised_at
from flowhost.wording import plural

if TYPE_CHECKING:
    from flowhost.live import RichProgress

__all__ = ["PlainProgress", "ProgressListener", "RichProgress", "human_duration", "make_progress"]


class ProgressListener(Protocol):
    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...

    def hold(self) -> None:
        """Stop drawing (a prompt needs the terminal); events are still taken in."""

    def release(self) -> None:
        """Draw again, showing what happened while held."""


def _ladder_line(e: Event, step: str) -> str | None:
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


_BATCH_LINES = 256  # plain lines written at most in one go


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


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Tally:
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
                f": {_clip(why)}" if why else ""))

    def caveats(self) -> list[str]:
        """What kept a successful run from being clean, a line per step (at most a few)."""
        shown = self.unclean[:_CAVEATS]
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


_CAVEATS = 10  # steps named at most in a run's closing words


def _clip(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _extras(e: StepFinished) -> str:
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


def _tests(results: dict[str, int]) -> str:
    rest = [f"{v} {k}" for k, v in results.items() if k not in {"passed", "failed", "total"} and v]
    parts = [f"{results.get('passed', 0)} passed", f"{results.get('failed', 0)} failed", *rest]
    return "Tests: " + ", ".join(parts)


class PlainProgress:
    """One plain line per event worth showing: for logs and pipes.

    Lines go out together, written and flushed once per turn of the event loop (when it
    next goes idle, or every ``_BATCH_LINES`` lines): a chain of fast steps costs a write
    per batch, not one per line. The run's last line, what is shown outside an event loop,
    and what a prompt's hold() would keep back are written at once."""

    def __init__(self, stream: TextIO | None = None, *, estimate_s: float | None = None,
                 carried: Iterable[str | StepFinished] = (), verbose: bool = False,
                 earlier_s: float = 0.0) -> None:
        self._stream: TextIO | None = stream if stream is not None else sys.stdout
        self._earlier_s = earlier_s
        self._verbose = verbose
        self._estimate_s = estimate_s
        self._tally = _Tally(carried)
        self._shown: dict[str, tuple[int, str, float]] = {}  # step -> (quarter, message, ts)
        self._clock = (-1, "")  # (second, "HH:MM:SS")
        self._held: list[str] | None = None  # lines kept back while a prompt is open
        self._pending: list[str] = []  # lines not written yet
        self._flush_soon: asyncio.Handle | None = None

    def __call__(self, event: Event) -> None:
        # Every step's three events first, without going through ``_line``'s cases.
        if type(event) is StepStarted:
            line: str | None = self._started(event)
        elif type(event) is StepFinished:
            line = self._finished(event)
        elif (type(event) is AttemptStarted and event.attempt == 1 and not self._shown
              and self._tally.plugin(event.step_id) == event.plugin):
            return  # the step's first attempt, of its own plugin: its start said it all
        else:
            line = self._line(event)
        if line is None or self._stream is None:
            return
        if (second := int(event.ts)) != self._clock[0]:
            self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
        if "\n" in line or "\r" in line:
            line = line.replace("\r\n", "\n").replace("\n", "\\n").replace("\r", "\\r")
        self._write(f"[{self._clock[1]}] {line}\n")
        if self._verbose and type(event) is AttemptFailed and event.traceback:
            self._write("".join(f"    {text}\n" for text in event.traceback.splitlines()))
        if type(event) is RunFinished:
            self._flush()

    def _write(self, text: str) -> None:
        if self._held is not None:
            self._held.append(text)
            return
        if self._stream is None:
            return
        pending = self._pending
        pending.append(text)
        if len(pending) >= _BATCH_LINES:
            self._flush()
        elif self._flush_soon is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
            else:
                self._flush_soon = loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        pending, self._pending = self._pending, []
        if pending:
            self._put("".join(pending))

    def _put(self, text: str) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) must not break the run
            self._stream = None

    def close(self) -> None:
        self.release()
        self._flush()

    def hold(self) -> None:
        if self._held is None:
            self._flush()  # what came before the prompt shows above it
            self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._put("".join(held))

    def _step(self, step_id: str, plugin: str = "") -> str:
        label, plugin, _ = self._tally.get(step_id, plugin)
        return f"step {label} {step_id} ({plugin})"

    def _started(self, e: StepStarted) -> str:
        t = self._tally
        t.step_started(e)
        return f"step {e.index or '?'}/{t.total or '?'} {e.step_id} ({e.plugin}) started"

    def _finished(self, e: StepFinished) -> str:
        self._tally.finished(e)
        if self._shown:
            self._shown.pop(e.step_id, None)
        head = self._step(e.step_id, e.plugin)
        if e.status == "success":
            return f"{head} succeeded in {e.duration_s:.2f}s{_extras(e)}"
        if e.status == "failed":
            tries = f" after {e.attempts} attempts" if e.attempts > 1 else ""
            hint = f" (hint: {e.hint})" if e.hint else ""
            error = e.error or e.error_type or "unknown error"
            return f"{head} failed{tries} in {e.duration_s:.2f}s: {error}{hint}"
        return f"{head} {e.status}" + (f": {e.reason}" if e.reason else "")

    def _line(self, e: Event) -> str | None:
        """The line of any event but a step's start and end (``__call__`` takes those)."""
        t = self._tally
        match e:
            case RunStarted():
                t.run_started(e)
                self._shown.clear()
                eta = self._estimate_s
                extra = f", estimated {human_duration(eta)}" if eta is not None else ""
                extra += ", resumed" if e.resumed else ""
                return f"run {e.run_id} started: {t.title}, {plural(t.total, 'step')}{extra}"
            case AttemptStarted():
                self._shown.pop(e.step_id, None)  # a new attempt reports its progress afresh
                plugin = t.get(e.step_id, e.plugin)[1]
                if e.attempt == 1 and e.plugin == plugin:
                    return None
                via = f" with {e.plugin}" if e.plugin != plugin else ""
                return f"{self._step(e.step_id)} attempt {e.attempt} started{via}"
            case StepProgress():
                # a line per 25% mark crossed, and for a new message at most one a second
                quarter = int(min(max(e.fraction, 0.0), 1.0) * 4)
                last_quarter, last_message, last_ts = self._shown.get(e.step_id, (0, "", 0.0))
                fresh = e.message != last_message and e.ts - last_ts >= 1.0
                if quarter <= last_quarter and not fresh:
                    return None
                self._shown[e.step_id] = (max(quarter, last_quarter), e.message, e.ts)
                message = f": {e.message}" if e.message else ""
                return f"{self._step(e.step_id)} {e.fraction:.0%}{message}"
            case AttemptFailed():
                via = f" with {e.plugin}" if e.plugin != t.get(e.step_id, e.plugin)[1] else ""
                hint = f" (hint: {e.hint})" if e.hint else ""
                return (
                    f"{self._step(e.step_id)} attempt {e.attempt}{via} failed: "
                    f"{e.error_type}: {e.message}{raised(e)}{hint}"
                )
            case RetryScheduled() | FallbackChosen() | InterventionRequested() | \
                    InterventionResolved() | CacheRejected():
                return _ladder_line(e, self._step(e.step_id))
            case BreakerChanged():
                return _ladder_line(e, "")
            case FinalValidationStarted():
                return f"final validation started: {plural(e.total_checks, 'check')}"
            case FinalValidationFinished():
                passed = sum(r.passed for r in e.results)
                bad = [r for r in e.results if not r.passed]
                failed = "".join(f"; {r.kind} failed: {r.message}" for r in bad)
                tests = f"; {_tests(e.test_results).lower()}" if e.test_results else ""
                return f"final validation: {passed}/{len(e.results)} checks passed{failed}{tests}"
            case RunFinished():
                others = f", {t.others()}" if t.others() else ""
                message = f": {e.message}" if e.message else ""
                caveats = t.caveats() if e.status == "success" else []
                not_clean = (f" — not every step succeeded: {'; '.join(caveats)}"
                             if caveats else "")
                return (
                    f"run finished: {e.status} in {took(e, self._earlier_s)}, "
                    f"{t.counts['success']}/{t.total} steps succeeded{others}{message}"
                    f"{not_clean}"
                )
        return None


def make_progress(
    *, enabled: bool, stream: TextIO | None = None, estimate_s: float | None = None,
    carried: Iterable[str | StepFinished] = (), term: str | None = None,
    verbose: bool = False,
    earlier_s: float = 0.0,
) -> ProgressListener:
    """The live view when enabled and writing to a terminal, else plain lines. ``carried``:
    the statuses of the steps an earlier process of a resumed run finished; ``term``: the
    terminal's ``$TERM`` (``dumb`` gets plain lines)."""
    out = stream if stream is not None else sys.stdout
    if enabled and _isatty(out) and term != "dumb":
        from rich.console import Console

        from flowhost.live import RichProgress

        return RichProgress(Console(file=out), estimate_s=estimate_s, carried=carried,
                            verbose=verbose, earlier_s=earlier_s)
    return PlainProgress(out, estimate_s=estimate_s, carried=carried, verbose=verbose,
                         earlier_s=earlier_s)


def __getattr__(name: str) -> Any:
    """``RichProgress`` lives in ``flowhost.live``: rich is imported only when it is used."""
    if name == "RichProgress":
        from flowhost.live import RichProgress

        return RichProgress
    raise AttributeError(f"module 'flowhost.progress' has no attribute {name!r}")
