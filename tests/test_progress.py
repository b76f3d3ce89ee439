"""The progress listeners: plain lines for logs, the rich live view for terminals."""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import replace

from rich.console import Console

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
from flowhost.progress import PlainProgress, RichProgress, human_duration, make_progress

T0 = time.mktime((2024, 5, 1, 12, 0, 0, 0, 0, -1))  # 12:00:00 local time
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STEPS = (
    ("scaffold", "fastapi-scaffolder", "Create API structure"),
    ("auth", "jwt-auth-plugin", "Add JWT authentication"),
    ("cache", "redis-cache-plugin", "Setup Redis caching"),
    ("docs", "docs-plugin", "Write API docs"),
    ("lint", "ruff-plugin", "Lint the code"),
)


def ok(step_id: str, plugin: str, ts: float) -> StepFinished:
    return StepFinished(run_id="r1", ts=ts, step_id=step_id, plugin=plugin, used_plugin=plugin,
                        status="success", attempts=1, duration_s=1.2)


def started(i: int, ts: float) -> StepStarted:
    step_id, plugin, purpose = STEPS[i - 1]
    return StepStarted(run_id="r1", ts=ts, step_id=step_id, plugin=plugin, purpose=purpose,
                       index=i, total=len(STEPS))


def progress(fraction: float, message: str, ts: float) -> StepProgress:
    return StepProgress(run_id="r1", ts=ts, step_id="auth", fraction=fraction, message=message)


def run_events() -> list[Event]:
    """A run: a cached step, two parallel steps (one retried, then substituted), a failure
    with a hint, a skipped dependant, final validation with tests."""
    return [
        RunStarted(run_id="r1", ts=T0, workflow_id="rest-api",
                   description="REST API with JWT auth", total_steps=5, steps=STEPS),
        started(1, T0),
        replace(ok("scaffold", "fastapi-scaffolder", T0), cached=True, duration_s=0.0),
        started(2, T0 + 1),
        started(3, T0 + 1),
        AttemptStarted(run_id="r1", ts=T0 + 1, step_id="auth", plugin="jwt-auth-plugin",
                       attempt=1),
        progress(0.1, "", T0 + 1.0),
        progress(0.3, "", T0 + 1.1),  # crosses 25%
        progress(0.4, "", T0 + 1.2),
        progress(0.45, "signing keys", T0 + 1.3),  # a new message, but too soon after 30%
        progress(0.5, "signing keys", T0 + 1.4),  # crosses 50%
        progress(0.55, "wiring routes", T0 + 2.5),  # a new message a second later
        AttemptFailed(run_id="r1", ts=T0 + 2.6, step_id="cache", plugin="redis-cache-plugin",
                      attempt=1, error_type="TransientError", error_kind="transient",
                      message="connection refused",
                      hint="Start Redis: redis-server --daemonize yes", duration_s=0.2),
        AttemptStarted(run_id="r1", ts=T0 + 2, step_id="cache", plugin="redis-lite", attempt=1),
        ok("auth", "jwt-auth-plugin", T0 + 3),
        replace(ok("cache", "redis-cache-plugin", T0 + 3), used_plugin="redis-lite", attempts=2),
        started(4, T0 + 3),
        AttemptFailed(run_id="r1", ts=T0 + 4, step_id="docs", plugin="docs-plugin", attempt=1,
                      error_type="PermanentError", error_kind="permanent", message="no README",
                      hint="Add a README.md", duration_s=0.1),
        replace(ok("docs", "docs-plugin", T0 + 4), status="failed", hint="Add a README.md",
                error="PermanentError: no README", error_type="PermanentError"),
        replace(ok("lint", "ruff-plugin", T0 + 4), status="skipped",
                reason="depends on failed step docs"),
        FinalValidationStarted(run_id="r1", ts=T0 + 5, total_checks=2),
        FinalValidationFinished(run_id="r1", ts=T0 + 6,
                                results=(CheckResult("files_exist", True, "3 files present"),
                                         CheckResult("command", False, "pytest exited 1")),
                                test_results={"total": 24, "passed": 23, "failed": 1}),
        RunFinished(run_id="r1", ts=T0 + 6, status="failed", duration_s=6.5,
                    message="step docs failed"),
    ]


def test_human_duration() -> None:
    assert [human_duration(s) for s in (0.85, 0.9996, 12.34, 59.97, 125, 3725)] == [
        "850ms", "1.0s", "12.3s", "1m 00s", "2m 05s", "1h 02m"]


def test_plain_lines() -> None:
    out = io.StringIO()
    listener = PlainProgress(out)
    for event in run_events():
        listener(event)
    listener.close()
    assert out.getvalue().splitlines() == [
        "[12:00:00] run r1 started: REST API with JWT auth, 5 steps",
        "[12:00:00] step 1/5 scaffold (fastapi-scaffolder) started",
        "[12:00:00] step 1/5 scaffold (fastapi-scaffolder) succeeded in 0.00s, cached",
        "[12:00:01] step 2/5 auth (jwt-auth-plugin) started",
        "[12:00:01] step 3/5 cache (redis-cache-plugin) started",
        "[12:00:01] step 2/5 auth (jwt-auth-plugin) 30%",
        "[12:00:01] step 2/5 auth (jwt-auth-plugin) 50%: signing keys",
        "[12:00:02] step 2/5 auth (jwt-auth-plugin) 55%: wiring routes",
        "[12:00:02] step 3/5 cache (redis-cache-plugin) attempt 1 failed: TransientError: "
        "connection refused (hint: Start Redis: redis-server --daemonize yes)",
        "[12:00:02] step 3/5 cache (redis-cache-plugin) attempt 1 started with redis-lite",
        "[12:00:03] step 2/5 auth (jwt-auth-plugin) succeeded in 1.20s",
        "[12:00:03] step 3/5 cache (redis-cache-plugin) succeeded in 1.20s, "
        "used redis-lite instead of redis-cache-plugin, attempt 2",
        "[12:00:03] step 4/5 docs (docs-plugin) started",
        "[12:00:04] step 4/5 docs (docs-plugin) attempt 1 failed: PermanentError: no README "
        "(hint: Add a README.md)",
        "[12:00:04] step 4/5 docs (docs-plugin) failed in 1.20s: PermanentError: no README "
        "(hint: Add a README.md)",
        "[12:00:04] step 5/5 lint (ruff-plugin) skipped: depends on failed step docs",
        "[12:00:05] final validation started: 2 checks",
        "[12:00:06] final validation: 1/2 checks passed; command failed: pytest exited 1; "
        "tests: 23 passed, 1 failed",
        "[12:00:06] run finished: failed in 6.5s, 3/5 steps succeeded, 1 failed, 1 skipped: "
        "step docs failed",
    ]


def test_plain_keeps_one_line_per_event_and_survives_a_closed_pipe() -> None:
    out = io.StringIO()
    listener = PlainProgress(out)
    listener(RunStarted(run_id="r", workflow_id="w", description="", total_steps=0, steps=()))
    listener(RunFinished(run_id="r", status="failed", duration_s=0.5, message="a\nb [red]x[/]"))
    assert out.getvalue().splitlines()[-1].endswith(
        "run finished: failed in 500ms, 0/0 steps succeeded: a\\nb [red]x[/]")
    out.close()
    listener(RunFinished(run_id="r", status="failed", duration_s=0.5))  # no exception


def rich_output(events: list[Event]) -> str:
    out = io.StringIO()
    listener = RichProgress(Console(file=out, force_terminal=True, width=100, height=30),
                            estimate_s=720, refresh_per_second=50)
    try:
        for event in events:
            listener(event)
            time.sleep(0.005)
    finally:
        listener.close()
    assert not [t for t in threading.enumerate() if t.name == "flowhost-progress"]
    return ANSI.sub("", out.getvalue())


def test_rich_view_shows_the_run() -> None:
    text = rich_output(run_events())
    for expected in [
        "🔧 Executing workflow: REST API with JWT auth",
        "Estimated time: ~12m 00s",
        "Steps: 5",
        "✓ Step 1/5: Create API structure (fastapi-scaffolder) — 0ms, cached",
        "⚠️ Step 3/5 attempt 1 failed: TransientError: connection refused",
        "   hint: Start Redis: redis-server --daemonize yes",
        "✓ Step 2/5: Add JWT authentication (jwt-auth-plugin) — 1.2s",
        "✓ Step 3/5: Setup Redis caching (redis-cache-plugin) — 1.2s, used redis-lite instead of "
        "redis-cache-plugin, attempt 2",  # not folded at width 100: the terminal does that
        "✗ Step 4/5: Write API docs (docs-plugin) — PermanentError: no README",
        "   hint: Add a README.md",
        "⊘ Step 5/5: Lint the code (ruff-plugin) skipped: depends on failed step docs",
        "🔍 Final Validation",
        "   ✓ files_exist: 3 files present",
        "   ✗ command: pytest exited 1",
        "   Tests: 23 passed, 1 failed",
        "❌ Workflow failed",
        "   Total time: 6.5s",
        "   Success rate: 60% (3/5 steps)",
        "   1 failed, 1 skipped",
    ]:
        assert expected in text, expected
    # each permanent line is printed once, in event order, and the summary comes last
    assert text.count("✓ Step 2/5") == 1
    assert text.count("hint: Add a README.md") == 1  # the failed attempt showed it already
    assert text.index("✓ Step 1/5") < text.index("⚠️ Step 3/5") < text.index("✗ Step 4/5")
    assert text.rstrip().endswith("step docs failed")


def test_rich_live_area_shows_running_steps_and_leaves_nothing_behind() -> None:
    out = io.StringIO()
    listener = RichProgress(Console(file=out, force_terminal=True, width=100, height=30),
                            refresh_per_second=50)
    try:
        for event in run_events()[:12]:  # auth and cache are running, auth at 55%
            listener(event)
        deadline = time.monotonic() + 5
        while "wiring routes" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        live = ANSI.sub("", out.getvalue())
    finally:
        listener.close()
    assert "⚙️ Step 2/5: Add JWT authentication (jwt-auth-plugin)" in live
    assert "   ⠋ [███████████░░░░░░░░░]  55%"[5:] in live
    assert "wiring routes" in live
    assert "⚙️ Step 3/5: Setup Redis caching (redis-cache-plugin)" in live
    # after the last frame of the four-line live area: erased, and nothing printed
    tail = out.getvalue()[out.getvalue().rindex("running…"):]
    assert tail.count("\x1b[1A\x1b[2K") == 3
    assert ANSI.sub("", tail).split("\r", 1)[1].strip() == ""
    assert not [t for t in threading.enumerate() if t.name == "flowhost-progress"]


def test_rich_markup_in_messages_is_printed_as_is() -> None:
    events: list[Event] = [
        RunStarted(run_id="r", workflow_id="w", description="[bold]x", total_steps=1,
                   steps=(("s", "p", "purpose [/]"),)),
        StepFinished(run_id="r", step_id="s", plugin="p", used_plugin="p", status="failed",
                     attempts=1, duration_s=0.1, error="bad [/red] :smile:"),
        RunFinished(run_id="r", status="cancelled", duration_s=0.1),
    ]
    text = rich_output(events)
    assert "Executing workflow: [bold]x" in text
    assert "✗ Step 1/1: purpose [/] (p) — bad [/red] :smile:" in text
    assert "⏹ Cancelled" in text


def test_rich_handles_many_fast_steps_cheaply() -> None:
    n = 2000
    steps = tuple((f"s{i}", "p", f"step {i}") for i in range(n))
    out = io.StringIO()
    listener = RichProgress(Console(file=out, force_terminal=True, width=100, height=30))
    begin = time.perf_counter()
    listener(RunStarted(run_id="r", workflow_id="w", description="", total_steps=n, steps=steps))
    for i in range(n):
        listener(StepStarted(run_id="r", step_id=f"s{i}", plugin="p", purpose=f"step {i}",
                             index=i + 1, total=n))
        listener(StepProgress(run_id="r", step_id=f"s{i}", fraction=0.5, message="half"))
        listener(StepFinished(run_id="r", step_id=f"s{i}", plugin="p", used_plugin="p",
                              status="success", attempts=1, duration_s=0.001))
    listener(RunFinished(run_id="r", status="success", duration_s=1.0))
    elapsed = time.perf_counter() - begin
    text = ANSI.sub("", out.getvalue())
    assert text.count("✓ Step") == n
    assert "Success rate: 100% (2000/2000 steps)" in text
    assert elapsed < 3.0


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_progress_picks_by_terminal() -> None:
    assert isinstance(make_progress(enabled=True, stream=io.StringIO()), PlainProgress)
    assert isinstance(make_progress(enabled=False, stream=FakeTty()), PlainProgress)
    rich = make_progress(enabled=True, stream=FakeTty(), estimate_s=3.0)
    assert isinstance(rich, RichProgress)
    rich.close()
    dumb = make_progress(enabled=True, stream=FakeTty(), term="dumb")  # the CLI's $TERM
    assert isinstance(dumb, PlainProgress)


def test_a_resumed_run_counts_the_steps_an_earlier_process_finished() -> None:
    out = io.StringIO()
    listener = PlainProgress(out, carried=["success", "success", "skipped"])
    events = run_events()
    listener(events[0])
    for event in (started(4, T0 + 3), ok("docs", "docs-plugin", T0 + 4),
                  started(5, T0 + 4), ok("lint", "ruff-plugin", T0 + 5)):
        listener(event)
    listener(RunFinished(run_id="r1", ts=T0 + 6, status="success", duration_s=3.0))
    assert out.getvalue().splitlines()[-1] == (
        "[12:00:06] run finished: success in 3.0s, 4/5 steps succeeded, 1 skipped")
