"""The live progress view: two event listeners that show a run as it happens.

``RichProgress`` draws the look of the execution guide in a terminal: a live area with the
running steps (spinner, bar, message, elapsed time) above which every finished step, failed
attempt and validation result leaves a permanent line. ``PlainProgress`` writes one
timestamped line per event worth showing, for logs, pipes and ``--no-progress``.
``make_progress`` picks one.

Both are cheap per event: a listener only updates a little state under a lock. RichProgress
prints and redraws from its own ticker thread at ~10 Hz, so thousands of fast steps cost a
few redraws a second, not one per event. Text from events is printed as it is (the engine
has redacted secrets) and never parsed as rich markup.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.constrain import Constrain
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    CheckResult,
    Event,
    FinalValidationFinished,
    FinalValidationStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepProgress,
    StepStarted,
)

__all__ = ["PlainProgress", "ProgressListener", "RichProgress", "human_duration", "make_progress"]

_BAR_WIDTH = 20
_RUN_HEADLINES = {
    "success": ("✅ Workflow complete!", "bold green"),
    "failed": ("❌ Workflow failed", "bold red"),
    "aborted": ("❌ Workflow aborted", "bold red"),
    "cancelled": ("⏹ Cancelled", "bold yellow"),
    "waiting": ("⏸ Waiting for a decision", "bold yellow"),
}


class ProgressListener(Protocol):
    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def human_duration(seconds: float) -> str:
    """850ms, 12.3s, 2m 05s, 1h 02m."""
    if round(seconds * 1000) < 1000:
        return f"{max(round(seconds * 1000), 0)}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


class _Tally:
    """What both views need: each step's "i/N", plugin and purpose, and the finished counts."""

    __slots__ = ("counts", "steps", "title", "total")

    def __init__(self) -> None:
        self.steps: dict[str, tuple[int, str, str]] = {}  # id -> (index, plugin, purpose)
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.title = ""

    def run_started(self, e: RunStarted) -> None:
        self.steps = {sid: (i, plug, purpose) for i, (sid, plug, purpose) in enumerate(e.steps, 1)}
        self.counts.clear()
        self.total = e.total_steps or len(e.steps)
        self.title = e.description or e.workflow_id

    def step_started(self, e: StepStarted) -> None:
        self.steps[e.step_id] = (e.index, e.plugin, e.purpose)
        self.total = e.total or self.total

    def get(self, step_id: str, plugin: str = "") -> tuple[str, str, str]:
        """The step's ("i/N", plugin, purpose); unknown steps show "?" and their id."""
        index, known_plugin, purpose = self.steps.get(step_id, (0, plugin, step_id))
        return f"{index or '?'}/{self.total or '?'}", known_plugin, purpose or step_id

    def rate(self) -> str:
        done = self.counts["success"]
        pct = 100 if not self.total else done * 100 // self.total
        return f"{pct}% ({done}/{self.total} steps)"

    def other_counts(self) -> str:
        return ", ".join(
            f"{self.counts[s]} {s}" for s in ("failed", "skipped", "cancelled") if self.counts[s]
        )


def _finish_extras(e: StepFinished) -> str:
    extras = [", cached"] if e.cached else []
    if e.used_plugin and e.used_plugin != e.plugin:
        extras.append(f", used {e.used_plugin} instead of {e.plugin}")
    if e.attempts > 1:
        extras.append(f", attempt {e.attempts}")
    return "".join(extras)


def _tests_text(results: dict[str, int]) -> str:
    rest = [f"{v} {k}" for k, v in results.items() if k not in {"passed", "failed", "total"} and v]
    parts = [f"{results.get('passed', 0)} passed", f"{results.get('failed', 0)} failed", *rest]
    return "Tests: " + ", ".join(parts)


class PlainProgress:
    """One plain line per event worth showing, flushed at once: for logs and pipes."""

    def __init__(self, stream: TextIO | None = None, *, estimate_s: float | None = None) -> None:
        self._stream: TextIO | None = stream if stream is not None else sys.stdout
        self._estimate_s = estimate_s
        self._tally = _Tally()
        self._shown: dict[str, tuple[int, str]] = {}  # step id -> (last quarter, last message)
        self._clock: tuple[int, str] = (-1, "")

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line is None or self._stream is None:
            return
        second = int(event.ts)
        if second != self._clock[0]:
            self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
        line = line.replace("\r\n", "\n").replace("\n", "\\n").replace("\r", "\\r")
        try:
            self._stream.write(f"[{self._clock[1]}] {line}\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) must not break the run
            self._stream = None

    def close(self) -> None:
        """Nothing to stop: every line is already flushed."""

    def _prefix(self, step_id: str, plugin: str = "") -> str:
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
                return f"run {e.run_id} started: {t.title}, {t.total} steps{extra}"
            case StepStarted():
                t.step_started(e)
                return f"{self._prefix(e.step_id)} started"
            case AttemptStarted():
                self._shown.pop(e.step_id, None)
                _, plugin, _ = t.get(e.step_id, e.plugin)
                if e.attempt == 1 and e.plugin == plugin:
                    return None
                via = f" with {e.plugin}" if e.plugin != plugin else ""
                return f"{self._prefix(e.step_id)} attempt {e.attempt} started{via}"
            case StepProgress():
                quarter = int(min(max(e.fraction, 0.0), 1.0) * 4)
                last_quarter, last_message = self._shown.get(e.step_id, (0, ""))
                if quarter <= last_quarter and e.message == last_message:
                    return None
                self._shown[e.step_id] = (max(quarter, last_quarter), e.message)
                message = f": {e.message}" if e.message else ""
                return f"{self._prefix(e.step_id)} {e.fraction:.0%}{message}"
            case AttemptFailed():
                _, plugin, _ = t.get(e.step_id, e.plugin)
                via = f" with {e.plugin}" if e.plugin != plugin else ""
                hint = f" (hint: {e.hint})" if e.hint else ""
                return (
                    f"{self._prefix(e.step_id)} attempt {e.attempt}{via} failed: "
                    f"{e.error_type}: {e.message}{hint}"
                )
            case StepFinished():
                t.counts[e.status] += 1
                self._shown.pop(e.step_id, None)
                head = self._prefix(e.step_id, e.plugin)
                if e.status == "success":
                    return f"{head} succeeded in {e.duration_s:.2f}s{_finish_extras(e)}"
                if e.status == "failed":
                    hint = f" (hint: {e.hint})" if e.hint else ""
                    tries = f" after {e.attempts} attempts" if e.attempts > 1 else ""
                    error = e.error or e.error_type or "unknown error"
                    return f"{head} failed{tries} in {e.duration_s:.2f}s: {error}{hint}"
                return f"{head} {e.status}" + (f": {e.reason}" if e.reason else "")
            case FinalValidationStarted():
                return f"final validation started: {e.total_checks} checks"
            case FinalValidationFinished():
                passed = sum(r.passed for r in e.results)
                failed = "".join(f"; {r.kind} failed: {r.message}" for r in e.results
                                 if not r.passed)
                tests = f"; {_tests_text(e.test_results).lower()}" if e.test_results else ""
                return f"final validation: {passed}/{len(e.results)} checks passed{failed}{tests}"
            case RunFinished():
                others = f", {t.other_counts()}" if t.other_counts() else ""
                message = f": {e.message}" if e.message else ""
                return (
                    f"run finished: {e.status} in {human_duration(e.duration_s)}, "
                    f"{t.counts['success']}/{t.total} steps succeeded{others}{message}"
                )
        return None


class _Running:
    __slots__ = ("attempt", "fraction", "message", "started", "via")

    def __init__(self, started: float) -> None:
        self.started = started
        self.fraction: float | None = None
        self.message = ""
        self.attempt = 1
        self.via = ""


class RichProgress:
    """The terminal view: permanent lines for what happened, a live area for what runs."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        estimate_s: float | None = None,
        refresh_per_second: float = 10.0,
    ) -> None:
        self._console = console if console is not None else Console()
        self._estimate_s = estimate_s
        self._interval = 1.0 / refresh_per_second
        self._tally = _Tally()
        self._lock = threading.Lock()  # guards the state below, shared with the ticker
        self._running: dict[str, _Running] = {}
        self._validating = 0  # number of final checks running, 0 when none
        self._pending: list[RenderableType] = []
        spinner = Spinner("dots")
        self._frames, self._frame_s = spinner.frames, spinner.interval / 1000
        self._live: Live | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- events (the event loop thread) ------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
            return
        if self._live is None and not isinstance(event, RunFinished):
            self._open()
        with self._lock:
            self._apply(event)
        if isinstance(event, RunFinished):
            self.close()
            self._console.print(self._summary(event))

    def close(self) -> None:
        """Print what is pending and stop the live area; safe to call more than once."""
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        live, self._live = self._live, None
        if live is None:
            return
        with self._lock:
            lines, self._pending = self._pending, []
            self._running.clear()
            self._validating = 0
        live.update(Group(), refresh=not lines)  # an empty live area leaves nothing behind
        if lines:
            self._console.print(Group(*lines))
        live.stop()

    def _start(self, e: RunStarted) -> None:
        self.close()
        with self._lock:
            self._tally.run_started(e)
        header = Text("🔧 Executing workflow: ", "bold").append(self._tally.title, "bold cyan")
        if self._estimate_s is not None:
            header.append(f"\n   Estimated time: ~{human_duration(self._estimate_s)}")
        header.append(f"\n   Steps: {self._tally.total}" + ("  (resumed)" if e.resumed else ""))
        self._console.print(header.append("\n"))
        self._open()

    def _open(self) -> None:
        self._live = Live(Group(), console=self._console, auto_refresh=False)
        self._live.start()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_forever, name="progress", daemon=True)
        self._ticker.start()

    def _apply(self, e: Event) -> None:
        t, out = self._tally, self._pending
        match e:
            case StepStarted():
                t.step_started(e)
                self._running[e.step_id] = _Running(e.ts)
            case AttemptStarted():
                if (run := self._running.get(e.step_id)) is not None:
                    run.attempt, run.fraction, run.message = e.attempt, None, ""
                    plugin = t.get(e.step_id, e.plugin)[1]
                    run.via = e.plugin if e.plugin != plugin else ""
            case StepProgress():
                if (run := self._running.get(e.step_id)) is not None:
                    run.fraction = min(max(e.fraction, 0.0), 1.0)
                    run.message = e.message or run.message
            case AttemptFailed():
                label = t.get(e.step_id, e.plugin)[0]
                head = f"⚠️ Step {label} attempt {e.attempt} failed: "
                out.append(Text.assemble((head, "yellow"), f"{e.error_type}: {e.message}"))
                self._hint(e.hint)
            case StepFinished():
                t.counts[e.status] += 1
                self._running.pop(e.step_id, None)
                out.append(self._finished_line(e))
                if e.status == "failed":
                    self._hint(e.hint)
            case FinalValidationStarted():
                self._validating = max(e.total_checks, 1)
            case FinalValidationFinished():
                self._validating = 0
                out.append(Text("\n🔍 Final Validation", "bold"))
                out.extend(self._check_line(r) for r in e.results)
                if e.test_results:
                    out.append(Text(f"   {_tests_text(e.test_results)}"))

    def _hint(self, hint: str | None) -> None:
        if hint:
            self._pending.append(Text.assemble(("   hint: ", "bold"), (hint, "cyan")))

    def _finished_line(self, e: StepFinished) -> Text:
        label, plugin, purpose = self._tally.get(e.step_id, e.plugin)
        name = f" Step {label}: {purpose} ({plugin})"
        if e.status == "success":
            tail = f" — {human_duration(e.duration_s)}{_finish_extras(e)}"
            return Text.assemble(("✓", "bold green"), name, (tail, "dim"))
        if e.status == "failed":
            error = e.error or e.error_type or "unknown error"
            return Text.assemble(("✗", "bold red"), name, (f" — {error}", "red"))
        mark = "⊘" if e.status == "skipped" else "⏹"
        reason = f": {e.reason}" if e.reason else ""
        return Text.assemble((mark, "yellow"), name, (f" {e.status}{reason}", "dim"))

    @staticmethod
    def _check_line(r: CheckResult) -> Text:
        mark = ("✓", "bold green") if r.passed else ("✗", "bold red")
        message = (f": {r.message}" if r.message else "", "dim")
        return Text.assemble("   ", mark, f" {r.kind}", message)

    def _summary(self, e: RunFinished) -> Text:
        headline, style = _RUN_HEADLINES.get(e.status, (f"Run {e.status}", "bold"))
        text = Text.assemble("\n", (headline, style))
        text.append(f"\n   Total time: {human_duration(e.duration_s)}")
        text.append(f"\n   Success rate: {self._tally.rate()}")
        if others := self._tally.other_counts():
            text.append(f"\n   {others[0].upper()}{others[1:]}", "yellow")
        if e.message:
            text.append(f"\n   {e.message}")
        return text

    # -- drawing (the ticker thread) ---------------------------------------------------

    def _tick_forever(self) -> None:
        drawn_empty = False
        while not self._stop.wait(self._interval):
            with self._lock:
                lines, self._pending = self._pending, []
                view = self._view()
            live = self._live
            if live is None or (view is None and drawn_empty and not lines):
                continue
            drawn_empty = view is None
            live.update(view or Group(), refresh=not lines)
            if lines:
                self._console.print(Group(*lines))

    def _view(self) -> RenderableType | None:
        """The live area: two lines per running step, as many as fit the terminal."""
        if not self._running and not self._validating:
            return None
        now, tick = time.time(), int(time.monotonic() / self._frame_s)
        spin = (self._frames[tick % len(self._frames)], "cyan")
        rows: list[RenderableType] = []
        fit = max(1, (self._console.size.height - 4) // 2)
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
                filled = int(run.fraction * _BAR_WIDTH + 1e-9)
                line.append(" [").append("█" * filled, "green")
                line.append("░" * (_BAR_WIDTH - filled), "dim").append(f"] {run.fraction:>4.0%}")
            line.append(f"  {human_duration(max(now - run.started, 0.0))}", "dim")
            if run.message:
                line.append(f"  {run.message}")
            rows += [title, line]
        if len(self._running) > fit:
            rows.append(Text(f"   … and {len(self._running) - fit} more running", "dim"))
        if self._validating:
            checks = f"running {self._validating} checks…"
            rows.append(Text.assemble("🔍 Final Validation: ", spin, f" {checks}"))
        # leave slack for terminals that draw emoji one cell wider than rich counts them
        return Constrain(Group(*rows), width=max(self._console.width - 2, 20))


def make_progress(
    *, enabled: bool, stream: TextIO | None = None, estimate_s: float | None = None
) -> ProgressListener:
    """The live view when enabled and writing to a real terminal, else plain lines."""
    out = stream if stream is not None else sys.stdout
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    if enabled and tty and os.environ.get("TERM") != "dumb":
        return RichProgress(Console(file=out), estimate_s=estimate_s)
    return PlainProgress(out, estimate_s=estimate_s)
