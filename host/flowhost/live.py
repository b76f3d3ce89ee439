"""The terminal view of a run (rich): permanent lines for what happened, above a live area
with the running steps (spinner, bar, message, elapsed), redrawn from a ticker thread at
~10 Hz, so thousands of fast steps cost a few redraws a second. Text from events is printed
as it is (the engine redacted secrets), never parsed as rich markup.

Imported only when a run shows on a terminal: rich is not needed for plain lines.
"""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(slots=True)
class _Running:
    started: float  # time.monotonic() of the step's start
    fraction: float | None = None
    message: str = ""
    attempt: int = 1
    via: str = ""  # the fallback running it ("alt, fallback 1"), if any
    backoff: RetryScheduled | None = None  # the retry it waits for, during a backoff
    backoff_until: float = 0.0  # time.monotonic() when that retry starts


class RichProgress:
    """The terminal view: permanent lines for what happened, a live area for what runs."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        estimate_s: float | None = None,
        refresh_per_second: float = 10.0,
        carried: Iterable[str | StepFinished] = (),
        verbose: bool = False,
        earlier_s: float = 0.0,
    ) -> None:
        self._earlier_s = earlier_s
        self._console = console if console is not None else Console()
        self._verbose = verbose
        self._estimate_s = estimate_s
        self._interval = 1.0 / refresh_per_second
        self._tally = Tally(carried)
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
        tty = isatty(self._console.file)
        self._live = Live(
            _EMPTY,
            console=self._console,
            auto_refresh=False,
            redirect_stdout=tty and isatty(sys.stdout),
            redirect_stderr=tty and isatty(sys.stderr),
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
                run.attempt, run.fraction, run.message, run.backoff = e.attempt, None, "", None
            case FallbackChosen() if (run := self._running.get(e.step_id)) is not None:
                # its progress is the fallback's: the row says whose (also when it is the
                # same plugin with other inputs)
                run.via = f"{e.fallback}, fallback {e.index}" if e.index else e.fallback
                out.append(Text(ladder_line(e, f"⚠️ Step {t.get(e.step_id)[0]}") or "",
                                "yellow"))
            case RetryScheduled() if (run := self._running.get(e.step_id)) is not None:
                run.backoff, run.backoff_until = e, time.monotonic() + e.delay_s
                out.append(Text(ladder_line(e, f"⚠️ Step {t.get(e.step_id)[0]}") or "",
                                "yellow"))
            case StepProgress() if (run := self._running.get(e.step_id)) is not None:
                run.fraction = min(max(e.fraction, 0.0), 1.0)
                run.message = e.message or run.message
            case AttemptFailed():
                head = f"⚠️ Step {t.get(e.step_id)[0]} attempt {e.attempt} failed: "
                out.append(Text.assemble((head, "yellow"),
                                         f"{e.error_type}: {e.message}{raised(e)}"))
                if self._verbose and e.traceback:
                    out.append(Text(textwrap.indent(e.traceback, "     "), "dim"))
                self._hint(e.hint)
                self._hinted[e.step_id] = e.hint
            case StepFinished():
                t.finished(e)
                self._running.pop(e.step_id, None)
                out.append(self._finished(e))
                if e.status == "failed" and e.hint != self._hinted.get(e.step_id):
                    self._hint(e.hint)  # unless the last failed attempt just showed it
                self._hinted.pop(e.step_id, None)
            case RetryScheduled() | FallbackChosen() | InterventionRequested() | \
                    InterventionResolved() | CacheRejected():
                if isinstance(e, InterventionResolved) and e.action == "retry" and (
                        run := self._running.get(e.step_id)) is not None:
                    run.via = ""  # the whole ladder again, from the primary
                line = ladder_line(e, f"⚠️ Step {t.get(e.step_id)[0]}")
                if line:
                    out.append(Text(line, "yellow"))
            case BreakerChanged():
                out.append(Text(f"⚡ {ladder_line(e, '')}", "magenta"))
            case FinalValidationStarted():
                self._validating = max(e.total_checks, 1)
            case FinalValidationFinished():
                self._validating = 0
                out.append(Text("\n🔍 Final Validation", "bold"))
                out.extend(self._check(r) for r in e.results)
                if e.test_results:
                    out.append(Text(f"   {tests_line(e.test_results)}"))

    def _hint(self, hint: str | None) -> None:
        if hint:
            self._pending.append(Text.assemble(("   hint: ", "bold"), (hint, "cyan")))

    def _finished(self, e: StepFinished) -> Text:
        label, plugin, purpose = self._tally.get(e.step_id, e.plugin)
        name = f" Step {label}: {purpose} ({plugin})"
        if e.status == "success":
            tail = f" — {human_duration(e.duration_s)}{extras(e)}"
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
        unclean = self._tally.unclean if e.status == "success" else []
        if unclean:  # it succeeded, but not cleanly: say so first, not "complete!"
            headline = f"⚠️ Workflow complete, but not every step succeeded ({self._tally.others()})"
            style = "bold yellow"
        text = Text.assemble("\n", (headline, style))
        text.append(f"\n   Total time: {took(e, self._earlier_s)}")
        text.append(f"\n   Success rate: {self._tally.rate()}")
        if unclean:
            for caveat in self._tally.caveats():
                text.append(f"\n   {caveat}", "yellow")
        elif others := self._tally.others():
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
        # Refreshed even when lines follow: printing redraws the live area below them from
        # what the last refresh drew, so without it a step that just finished would show
        # its running row under its finished line until the next tick.
        self._live.update(view or _EMPTY, refresh=True)
        if lines:  # one print: the lines go above, the live area is redrawn below them
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
            if run.backoff is not None:
                line.append(f" {_waiting(run.backoff, run.backoff_until - now)}", "yellow")
            elif run.fraction is None:
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


def _waiting(retry: RetryScheduled, left: float) -> str:
    """The row of a step during its backoff: what it waits for, and how long still."""
    budget = (f" ({retry.plugin_attempt} of {retry.max_attempts} with {retry.plugin})"
              if retry.max_attempts else f" (with {retry.plugin})")
    return f"waiting {human_duration(max(left, 0.0))} before attempt {retry.next_attempt}{budget}"
