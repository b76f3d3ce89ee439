"""The progress view: event listeners that show a run as it happens.

``RichProgress`` (a terminal): a live area with the running steps (spinner, bar, message,
elapsed), above which each finished step, failed attempt and check leaves a permanent line.
``PlainProgress`` (logs, pipes, ``--no-progress``): one timestamped line per event worth
showing. Both only update a little state per event; RichProgress prints and redraws from its
own ticker thread at ~10 Hz, so thousands of fast steps cost a few redraws a second. Text
from events is printed as it is (the engine redacted secrets), never parsed as rich markup.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.constrain import Constrain
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    BreakerChanged,
    CacheRejected,
    CheckResult,
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
from flowhost.wording import plural

__all__ = ["PlainProgress", "ProgressListener", "RichProgress", "human_duration", "make_progress"]

_BAR = 20  # cells
_EMPTY = Group()  # the live area with nothing running: zero lines, so it leaves no trace
_HEADLINES = {
    "success": ("✅ Workflow complete!", "bold green"),
    "failed": ("❌ Workflow failed", "bold red"),
    "aborted": ("❌ Workflow aborted", "bold red"),
    "cancelled": ("⏹ Cancelled", "bold yellow"),
    "interrupted": ("⏹ Interrupted", "bold yellow"),
    "waiting": ("⏸ Waiting for a decision", "bold yellow"),
}


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
            return f"{step}: retrying {e.plugin} in {human_duration(e.delay_s)} " \
                   f"(attempt {e.next_attempt})"
        case FallbackChosen():
            return f"{step}: falling back to {e.fallback} instead of {e.plugin} ({e.reason})"
        case InterventionRequested():
            hint = f" — hint: {e.hint}" if e.hint else ""
            tries = f"{e.attempts} attempt{'s' if e.attempts != 1 else ''}"
            return f"{step}: needs a human decision after {tries}: " \
                   f"{e.error_type}: {e.error}{hint}"
        case InterventionResolved():
            given = " with outputs" if e.outputs else ""
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


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Tally:
    """What both views need: each step's "i/N", plugin and purpose; the finished counts."""

    def __init__(self, carried: Iterable[str] = ()) -> None:
        self.steps: dict[str, tuple[int, str, str]] = {}  # id -> (index, plugin, purpose)
        # Statuses of steps an earlier process of this run finished (a resume), so the
        # summary speaks of the whole run.
        self.carried: Counter[str] = Counter(carried)
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.title = ""

    def run_started(self, e: RunStarted) -> None:
        self.steps = {sid: (i, plug, purpose) for i, (sid, plug, purpose) in enumerate(e.steps, 1)}
        self.counts = Counter(self.carried)
        self.total = e.total_steps or len(e.steps)
        self.title = e.description or e.workflow_id

    def step_started(self, e: StepStarted) -> None:
        self.steps[e.step_id] = (e.index, e.plugin, e.purpose)
        self.total = e.total or self.total

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


def _extras(e: StepFinished) -> str:
    used = e.used_plugin and e.used_plugin != e.plugin
    return (
        (", cached" if e.cached else "")
        + (f", used {e.used_plugin} instead of {e.plugin}" if used else "")
        + (f", attempt {e.attempts}" if e.attempts > 1 else "")
    )


def _tests(results: dict[str, int]) -> str:
    rest = [f"{v} {k}" for k, v in results.items() if k not in {"passed", "failed", "total"} and v]
    parts = [f"{results.get('passed', 0)} passed", f"{results.get('failed', 0)} failed", *rest]
    return "Tests: " + ", ".join(parts)


class PlainProgress:
    """One plain line per event worth showing, flushed at once: for logs and pipes."""

    def __init__(self, stream: TextIO | None = None, *, estimate_s: float | None = None,
                 carried: Iterable[str] = ()) -> None:
        self._stream: TextIO | None = stream if stream is not None else sys.stdout
        self._estimate_s = estimate_s
        self._tally = _Tally(carried)
        self._shown: dict[str, tuple[int, str, float]] = {}  # step -> (quarter, message, ts)
        self._clock = (-1, "")  # (second, "HH:MM:SS")
        self._held: list[str] | None = None  # lines kept back while a prompt is open

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line is None or self._stream is None:
            return
        if (second := int(event.ts)) != self._clock[0]:
            self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
        line = line.replace("\r\n", "\n").replace("\n", "\\n").replace("\r", "\\r")
        self._write(f"[{self._clock[1]}] {line}\n")

    def _write(self, text: str) -> None:
        if self._held is not None:
            self._held.append(text)
            return
        if self._stream is None:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) must not break the run
            self._stream = None

    def close(self) -> None:
        self.release()

    def hold(self) -> None:
        if self._held is None:
            self._held = []

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._write("".join(held))

    def _step(self, step_id: str, plugin: str = "") -> str:
        label, plugin, _ = self._tally.get(step_id, plugin)
        return f"step {label} {step_id} ({plugin})"

    def _line(self, e: Event) -> str | None:
        t = self._tally
        match e:
            case RunStarted():
                t.run_started(e)
                self._shown.clear()
                eta = self._estimate_s
                extra = f", estimated {human_duration(eta)}" if eta is not None else ""
                extra += ", resumed" if e.resumed else ""
                return f"run {e.run_id} started: {t.title}, {plural(t.total, 'step')}{extra}"
            case StepStarted():
                t.step_started(e)
                return f"{self._step(e.step_id)} started"
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
                    f"{e.error_type}: {e.message}{hint}"
                )
            case StepFinished():
                t.counts[e.status] += 1
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
                return (
                    f"run finished: {e.status} in {human_duration(e.duration_s)}, "
                    f"{t.counts['success']}/{t.total} steps succeeded{others}{message}"
                )
        return None


@dataclass(slots=True)
class _Running:
    started: float  # time.monotonic() of the step's start
    fraction: float | None = None
    message: str = ""
    attempt: int = 1
    via: str = ""  # the fallback plugin running it, if any


class RichProgress:
    """The terminal view: permanent lines for what happened, a live area for what runs."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        estimate_s: float | None = None,
        refresh_per_second: float = 10.0,
        carried: Iterable[str] = (),
    ) -> None:
        self._console = console if console is not None else Console()
        self._estimate_s = estimate_s
        self._interval = 1.0 / refresh_per_second
        self._tally = _Tally(carried)
        self._lock = threading.Lock()  # guards the state below, shared with the ticker
        self._running: dict[str, _Running] = {}
        self._validating = 0  # final checks running
        self._pending: list[Text] = []  # permanent lines the ticker has not printed yet
        self._hinted: dict[str, str | None] = {}  # step id -> hint of its last failed attempt
        spinner = Spinner("dots")
        self._frames, self._frame_s = spinner.frames, spinner.interval / 1000
        self._live: Live | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._held = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, RunFinished):
            self.close()
            self._console.print(self._summary(event))
        else:
            if self._live is None and not self._held:
                self._open()
            with self._lock:
                self._apply(event)

    def hold(self) -> None:
        """Stop the live area, keeping what runs: a prompt is about to use the terminal."""
        if self._held:
            return
        self._held = True
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        if self._live is not None:
            self._draw()
            self._live.update(_EMPTY, refresh=True)
            self._live.stop()
            self._live = None

    def release(self) -> None:
        if self._held:
            self._held = False
            self._open()

    def close(self) -> None:
        """Print what is pending and end the live area, leaving nothing of it behind."""
        self._held = False
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        if self._live is not None:
            with self._lock:
                self._running.clear()
                self._hinted.clear()
                self._validating = 0
            self._draw()
            self._live.stop()
            self._live = None

    def _start(self, e: RunStarted) -> None:
        self.close()
        self._tally.run_started(e)
        header = Text("🔧 Executing workflow: ", "bold").append(self._tally.title, "bold cyan")
        if self._estimate_s is not None:
            header.append(f"\n   Estimated time: ~{human_duration(self._estimate_s)}")
        header.append(f"\n   Steps: {self._tally.total}" + ("  (resumed)" if e.resumed else ""))
        self._console.print(header.append("\n"))
        self._open()

    def _open(self) -> None:
        # stray prints to a std stream on the same terminal go above the live area
        tty = _isatty(self._console.file)
        self._live = Live(
            _EMPTY,
            console=self._console,
            auto_refresh=False,
            redirect_stdout=tty and _isatty(sys.stdout),
            redirect_stderr=tty and _isatty(sys.stderr),
        )
        self._live.start()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="flowhost-progress", daemon=True)
        self._ticker.start()

    def _apply(self, e: Event) -> None:
        t, out = self._tally, self._pending
        match e:
            case StepStarted():
                t.step_started(e)
                # count from e.ts, so that a listener attached late shows the true elapsed
                self._running[e.step_id] = _Running(time.monotonic() - max(time.time() - e.ts, 0))
            case AttemptStarted() if (run := self._running.get(e.step_id)) is not None:
                run.attempt, run.fraction, run.message = e.attempt, None, ""
                run.via = e.plugin if e.plugin != t.get(e.step_id, e.plugin)[1] else ""
            case StepProgress() if (run := self._running.get(e.step_id)) is not None:
                run.fraction = min(max(e.fraction, 0.0), 1.0)
                run.message = e.message or run.message
            case AttemptFailed():
                head = f"⚠️ Step {t.get(e.step_id)[0]} attempt {e.attempt} failed: "
                out.append(Text.assemble((head, "yellow"), f"{e.error_type}: {e.message}"))
                self._hint(e.hint)
                self._hinted[e.step_id] = e.hint
            case StepFinished():
                t.counts[e.status] += 1
                self._running.pop(e.step_id, None)
                out.append(self._finished(e))
                if e.status == "failed" and e.hint != self._hinted.get(e.step_id):
                    self._hint(e.hint)  # unless the last failed attempt just showed it
                self._hinted.pop(e.step_id, None)
            case RetryScheduled() | FallbackChosen() | InterventionRequested() | \
                    InterventionResolved() | CacheRejected():
                line = _ladder_line(e, f"⚠️ Step {t.get(e.step_id)[0]}")
                if line:
                    out.append(Text(line, "yellow"))
            case BreakerChanged():
                out.append(Text(f"⚡ {_ladder_line(e, '')}", "magenta"))
            case FinalValidationStarted():
                self._validating = max(e.total_checks, 1)
            case FinalValidationFinished():
                self._validating = 0
                out.append(Text("\n🔍 Final Validation", "bold"))
                out.extend(self._check(r) for r in e.results)
                if e.test_results:
                    out.append(Text(f"   {_tests(e.test_results)}"))

    def _hint(self, hint: str | None) -> None:
        if hint:
            self._pending.append(Text.assemble(("   hint: ", "bold"), (hint, "cyan")))

    def _finished(self, e: StepFinished) -> Text:
        label, plugin, purpose = self._tally.get(e.step_id, e.plugin)
        name = f" Step {label}: {purpose} ({plugin})"
        if e.status == "success":
            tail = f" — {human_duration(e.duration_s)}{_extras(e)}"
            return Text.assemble(("✓", "bold green"), name, (tail, "dim"))
        if e.status == "failed":
            error = e.error or e.error_type or "unknown error"
            return Text.assemble(("✗", "bold red"), name, (f" — {error}", "red"))
        mark = "⊘" if e.status == "skipped" else "⏹"
        reason = f": {e.reason}" if e.reason else ""
        return Text.assemble((mark, "yellow"), name, (f" {e.status}{reason}", "dim"))

    @staticmethod
    def _check(r: CheckResult) -> Text:
        mark = ("✓", "bold green") if r.passed else ("✗", "bold red")
        return Text.assemble("   ", mark, f" {r.kind}", (f": {r.message}" if r.message else ""))

    def _summary(self, e: RunFinished) -> Text:
        headline, style = _HEADLINES.get(e.status, (f"Run {e.status}", "bold"))
        text = Text.assemble("\n", (headline, style))
        text.append(f"\n   Total time: {human_duration(e.duration_s)}")
        text.append(f"\n   Success rate: {self._tally.rate()}")
        if others := self._tally.others():
            text.append(f"\n   {others}", "yellow")
        if e.message:
            text.append(f"\n   {e.message}")
        return text

    # -- the ticker thread: the only place (but close) that prints while live ----------

    def _tick(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self._draw()
        except (OSError, ValueError):  # the terminal went away; the run goes on
            pass

    def _draw(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            view = self._view()
        if self._live is None or (not lines and view is None and self._live.renderable is _EMPTY):
            return
        self._live.update(view or _EMPTY, refresh=not lines)
        if lines:  # one print: the lines go above, the live area is redrawn once below them
            # soft wrap: the terminal folds long lines, so a hint's command copies whole
            self._console.print(Text("\n").join(lines), soft_wrap=True)

    def _view(self) -> RenderableType | None:
        """The live area: two lines per running step, as many as fit the terminal."""
        if not self._running and not self._validating:
            return None
        now = time.monotonic()
        spin = (self._frames[int(now / self._frame_s) % len(self._frames)], "cyan")
        fit = max(1, (self._console.size.height - 4) // 2)
        rows: list[RenderableType] = []
        for step_id, run in list(self._running.items())[:fit]:
            label, plugin, purpose = self._tally.get(step_id)
            title = Text(f"⚙️ Step {label}: {purpose} ({plugin})", no_wrap=True, overflow="ellipsis")
            if run.attempt > 1 or run.via:
                via = f" with {run.via}" if run.via else ""
                title.append(f" · attempt {run.attempt}{via}", "yellow")
            line = Text.assemble("   ", spin, no_wrap=True, overflow="ellipsis")
            if run.fraction is None:
                line.append(" running…", "dim")
            else:
                filled = int(run.fraction * _BAR + 1e-9)
                line.append(" [").append("█" * filled, "green").append("░" * (_BAR - filled), "dim")
                line.append(f"] {run.fraction:>4.0%}")
            line.append(f"  {human_duration(now - run.started)}", "dim")
            rows += [title, line.append(f"  {run.message}" if run.message else "")]
        if len(self._running) > fit:
            rows.append(Text(f"   … and {len(self._running) - fit} more running", "dim"))
        if self._validating:
            checks = f" running {plural(self._validating, 'check')}…"
            rows.append(Text.assemble(("🔍 Final Validation: ", "bold"), spin, checks))
        # slack for terminals that draw an emoji wider than rich counts it
        return Constrain(Group(*rows), width=max(self._console.width - 2, 20))


def make_progress(
    *, enabled: bool, stream: TextIO | None = None, estimate_s: float | None = None,
    carried: Iterable[str] = (),
) -> ProgressListener:
    """The live view when enabled and writing to a terminal, else plain lines. ``carried``:
    the statuses of the steps an earlier process of a resumed run finished."""
    out = stream if stream is not None else sys.stdout
    if enabled and _isatty(out) and os.environ.get("TERM") != "dumb":
        return RichProgress(Console(file=out), estimate_s=estimate_s, carried=carried)
    return PlainProgress(out, estimate_s=estimate_s, carried=carried)
