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
import sys
import time
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
from flowhost.progress_text import (
    Tally,
    extras,
    human_duration,
    isatty,
    ladder_line,
    raised,
    tests_line,
    took,
)
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


_BATCH_LINES = 256  # plain lines written at most in one go


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
        self._tally = Tally(carried)
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
            return f"{head} succeeded in {e.duration_s:.2f}s{extras(e)}"
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
                return ladder_line(e, self._step(e.step_id))
            case BreakerChanged():
                return ladder_line(e, "")
            case FinalValidationStarted():
                return f"final validation started: {plural(e.total_checks, 'check')}"
            case FinalValidationFinished():
                passed = sum(r.passed for r in e.results)
                bad = [r for r in e.results if not r.passed]
                failed = "".join(f"; {r.kind} failed: {r.message}" for r in bad)
                tests = f"; {tests_line(e.test_results).lower()}" if e.test_results else ""
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
    if enabled and isatty(out) and term != "dumb":
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
