"""The recovery ladder applied by the engine: retries, fallbacks, manual decisions, breaker.

Sleeps are recorded, not waited for, so backoff is checked exactly.
"""

from __future__ import annotations

import io
import queue
import time
from pathlib import Path
from typing import Any

import pytest

from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import (
    AttemptFailed,
    BreakerChanged,
    Event,
    EventBus,
    FallbackChosen,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
)
from flowhost.intervene import (
    InterventionRequest,
    PolicyIntervener,
    QueuedIntervener,
    Resolution,
    TerminalIntervener,
)
from flowhost.result import RunResult, fold
from flowhost.spec_loading import parse_spec
from flowhost.static import check


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Scripted:
    """An intervener that answers from a list and records what it was asked."""

    def __init__(self, *answers: Resolution) -> None:
        self.answers = list(answers)
        self.requests: list[InterventionRequest] = []

    async def resolve(self, request: InterventionRequest) -> Resolution:
        self.requests.append(request)
        return self.answers.pop(0)


async def run(text: str, *, intervener: Any = None,
              sleeps: Sleeps | None = None) -> tuple[str, RunResult, list[Event]]:
    plan = check(parse_spec(text, "wf.yaml"), Catalog(), {})
    bus = EventBus()
    engine = Engine(plan, bus, env={}, intervener=intervener, sleep=sleeps or Sleeps())
    status = await engine.run()
    assert bus.history is not None
    return status, fold(bus.history), bus.history


def step(result: RunResult, step_id: str) -> Any:
    return next(s for s in result.steps if s.id == step_id)


async def test_transient_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    sleeps = Sleeps()
    status, result, events = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 3}}
    retry: {{max_attempts: 4, initial_delay: 2, multiplier: 3, max_delay: 10}}
""", sleeps=sleeps)
    assert status == "success"
    assert sleeps.delays == [2, 6, 10]
    assert [e.next_attempt for e in events if isinstance(e, RetryScheduled)] == [2, 3, 4]
    record = step(result, "f")
    assert (record.attempts, record.used_plugin) == (4, "flaky")
    assert [a.delay_s for a in record.failed_attempts] == [2, 6, 10]
    assert result.outputs["f"] == {"calls": 4, "value": "good"}


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    sleeps = Sleeps()
    await run(f"""
workflow_id: w
defaults: {{retry: {{max_attempts: 2, initial_delay: 1}}}}
steps:
  - {{plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", retry_after: 7.5}}}}
""", sleeps=sleeps)
    assert sleeps.delays == [7.5]


async def test_permanent_errors_skip_retries_and_fall_back(tmp_path: Path) -> None:
    sleeps = Sleeps()
    status, result, events = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 5, kind: permanent}}
    retry: {{max_attempts: 5, initial_delay: 1}}
    fallback:
      - plugin: alternative
        inputs: {{note: "for ${{inputs.counter_file}}"}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
""", sleeps=sleeps)
    assert status == "success"
    assert sleeps.delays == []
    assert (tmp_path / "c").read_text() == "1"
    chosen = [e for e in events if isinstance(e, FallbackChosen)]
    assert [(e.plugin, e.fallback) for e in chosen] == [("flaky", "alternative")]
    assert step(result, "f").used_plugin == "alternative"
    assert result.outputs["after"]["text"] == f"alternative for {tmp_path}/c"
    assert result.learnings.modifications == ["Used alternative instead of flaky"]


async def test_fallback_without_inputs_gets_the_primarys(tmp_path: Path) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 9}}
    fallback: [{{plugin: alternative}}]
""")
    assert status == "success"
    assert result.outputs["f"]["value"] == "alternative"


async def test_failed_validation_is_retried(tmp_path: Path) -> None:
    status, _, events = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 1, kind: validation}}
    retry: {{max_attempts: 2, initial_delay: 0}}
    validation: [{{output: {{field: value, equals: good}}}}]
""")
    assert status == "success"
    kinds = [e.error_kind for e in events if isinstance(e, AttemptFailed)]
    assert kinds == ["validation"]


async def test_manual_retry_then_success(tmp_path: Path) -> None:
    intervener = Scripted(Resolution("retry"))
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 2, hint: "Start the thing"}}
    retry: {{max_attempts: 2, initial_delay: 0}}
""", intervener=intervener)
    assert status == "success"
    (request,) = intervener.requests
    assert request.hint == "Start the thing"
    assert [a.message for a in request.attempts] == ["failure 1", "failure 2"]
    assert step(result, "f").interventions[0].action == "retry"


async def test_needs_intervention_goes_straight_to_a_human(tmp_path: Path) -> None:
    intervener = Scripted(Resolution("skip", outputs={"calls": 0, "value": "by hand"}))
    status, result, events = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", kind: intervention}}
    retry: {{max_attempts: 5}}
    fallback: [{{plugin: alternative}}]
    manual: {{hint: "Ask the admin"}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
""", intervener=intervener)
    assert status == "success"
    assert not [e for e in events if isinstance(e, FallbackChosen)]
    assert step(result, "f").status == "skipped"
    assert result.outputs["after"]["text"] == "by hand"


async def test_skip_without_outputs_skips_dependents(tmp_path: Path) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}}}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
  - {{id: other, plugin: echo, inputs: {{text: x}}}}
""", intervener=PolicyIntervener("skip"))
    assert status == "success"
    assert step(result, "f").status == "skipped"
    assert step(result, "after").reason == "step 'f' was skipped"
    assert step(result, "other").status == "success"


async def test_user_abort_aborts_the_run(tmp_path: Path) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}},
     on_failure: continue}}
""", intervener=Scripted(Resolution("abort")))
    assert status == "aborted"
    assert step(result, "f").status == "failed"


async def test_policy_fail_leaves_it_to_on_failure(tmp_path: Path) -> None:
    status, result, events = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}},
     on_failure: continue}}
  - {{id: other, plugin: echo, inputs: {{text: x}}}}
""", intervener=PolicyIntervener("fail"))
    assert status == "success"
    assert step(result, "f").status == "failed"
    assert any(isinstance(e, InterventionRequested) for e in events)


async def test_policy_abort_stops_the_run_like_a_person(tmp_path: Path) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}},
     on_failure: continue}}
  - {{id: later, plugin: echo, inputs: {{text: $f.value}}}}
""", intervener=PolicyIntervener("abort"))
    assert status == "aborted"
    assert step(result, "later").status == "skipped"


async def test_manual_false_skips_level_three(tmp_path: Path) -> None:
    intervener = Scripted()
    status, _, events = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}},
     manual: false}}
""", intervener=intervener)
    assert status == "failed"
    assert intervener.requests == []
    assert not any(isinstance(e, InterventionRequested) for e in events)


async def test_wait_leaves_the_run_waiting(tmp_path: Path) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - {{id: f, plugin: flaky, inputs: {{counter_file: "{tmp_path}/c", kind: permanent}}}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
  - {{id: other, plugin: echo, inputs: {{text: x}}}}
""", intervener=PolicyIntervener("wait"))
    assert status == "waiting"
    assert step(result, "f").status == "waiting"
    assert step(result, "after").status == "pending"
    assert step(result, "other").status == "success"


async def test_open_breaker_sends_later_steps_to_their_fallback(tmp_path: Path) -> None:
    sleeps = Sleeps()
    steps = "\n".join(f"""  - id: s{i}
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", fail_times: 100}}
    needs: [{f"s{i - 1}" if i else ""}]
    retry: {{max_attempts: 3, initial_delay: 1}}
    fallback: [{{plugin: alternative}}]""".replace("needs: []\n    ", "") for i in range(4))
    status, result, events = await run(f"""
workflow_id: w
breaker: {{failures: 2, reset_after: 60}}
steps:
{steps}
""", sleeps=sleeps)
    assert status == "success"
    # s0 fails twice: the circuit opens, so its third attempt is not made.
    assert (tmp_path / "c").read_text() == "2"
    assert sleeps.delays == [1]
    changes = [(e.plugin, e.state) for e in events if isinstance(e, BreakerChanged)]
    assert changes == [("flaky", "open")]
    assert all(s.used_plugin == "alternative" for s in result.steps)
    assert result.circuit_breakers[0].plugin == "flaky"


async def test_terminal_prompt_asks_validates_outputs_and_answers() -> None:
    answers = iter(["maybe", "s", "{not json", '{"calls": "x", "value": "v"}',
                    '{"calls": 1, "value": "v"}'])
    out = io.StringIO()
    held: list[str] = []
    intervener = TerminalIntervener(hold=lambda: held.append("hold"),
                                    release=lambda: held.append("release"),
                                    read=lambda prompt: next(answers), out=out)
    request = InterventionRequest(
        step_id="f", label="3: Setup caching", plugin="redis-cache-plugin",
        error="connection refused", error_type="TransientError",
        hint="Start Redis: redis-server --daemonize yes", attempts=(),
        output_schema={"type": "object", "required": ["calls", "value"],
                       "properties": {"calls": {"type": "integer"},
                                      "value": {"type": "string"}}})
    resolution = await intervener.resolve(request)
    assert resolution == Resolution("skip", outputs={"calls": 1, "value": "v"})
    text = out.getvalue()
    assert "Manual intervention required for step 3: Setup caching" in text
    assert "Action: Start Redis: redis-server --daemonize yes" in text
    assert "Please answer r, s or a." in text
    assert "Not valid JSON" in text
    assert "'x' is not of type 'integer'" in text
    assert held == ["hold", "release"]


async def test_a_terminal_prompt_gives_up_after_the_timeout_and_its_read_serves_the_next(
        ) -> None:
    lines: queue.Queue[str] = queue.Queue()
    reads: list[str] = []

    def read(prompt: str) -> str:  # a person who answers only when the test says so
        reads.append(prompt)
        return lines.get(timeout=30)

    out = io.StringIO()
    intervener = TerminalIntervener(read=read, out=out)
    asked = time.time()
    timed = InterventionRequest(step_id="f", label="1", plugin="p", error="e",
                                error_type="E", hint=None, attempts=(), timeout_s=0.05,
                                default="skip", asked_at=asked)
    resolution = await intervener.resolve(timed)
    assert resolution == Resolution("skip", by="timeout", at=asked + 0.05)
    assert "No answer within 0.05s: applying the step's manual.default, skip" in out.getvalue()
    # the line read for the prompt that gave up goes to the next prompt, not to a 2nd read
    lines.put("r")
    later = InterventionRequest(step_id="g", label="2", plugin="p", error="e",
                                error_type="E", hint=None, attempts=())
    assert await intervener.resolve(later) == Resolution("retry")
    assert len(reads) == 1
    # a question whose time ran out before its turn is not asked at all
    late = InterventionRequest(step_id="h", label="3", plugin="p", error="e", error_type="E",
                               hint=None, attempts=(), timeout_s=1, default="abort",
                               asked_at=asked - 5)
    assert (await intervener.resolve(late)).action == "abort" and len(reads) == 1


@pytest.mark.parametrize(("default", "run_status", "step_status"), [
    ("fail", "failed", "failed"), ("skip", "success", "skipped"),
    ("abort", "aborted", "failed")])
async def test_the_manual_default_applies_once_nobody_answers_in_time(
        tmp_path: Path, default: str, run_status: str, step_status: str) -> None:
    status, result, events = await run(f"""
workflow_id: w
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{tmp_path}/c", kind: intervention}}
    manual: {{timeout: 0.05, default: {default}}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
""", intervener=QueuedIntervener())
    assert (status, step(result, "f").status) == (run_status, step_status)
    assert step(result, "after").status == "skipped"
    [asked] = [e for e in events if isinstance(e, InterventionRequested)]
    assert (asked.timeout_s, asked.default) == (0.05, default)
    [answer] = [e for e in events if isinstance(e, InterventionResolved)]
    assert (answer.action, answer.by) == (default, "timeout")
    assert answer.ts == asked.ts + 0.05  # decided at the deadline
    assert step(result, "f").interventions[-1].by == "timeout"


async def test_hint_rules_from_entry_points_apply() -> None:
    _, result, _ = await run("""
workflow_id: w
steps:
  - {id: f, plugin: fail, inputs: {message: "API quota exceeded for today"}}
""")
    record = step(result, "f")
    assert record.failed_attempts[0].hint == "Raise the quota: fixturectl quota --increase"


async def test_bad_ladder_settings_are_spec_errors(tmp_path: Path) -> None:
    from flowhost.problems import SpecError
    from flowhost.static import check_file

    text = """
workflow_id: w
defaults: {retry: {max_attempts: 0}}
steps:
  - id: a
    plugin: echo
    inputs: {text: x}
    retry: {initial_delay: -1, multiplier: 0.5}
  - id: b
    plugin: echo
    inputs: {text: $a.text}
    fallback:
      - {plugin: no-such-plugin}
      - {plugin: numbers, inputs: {count: not-a-number}}
"""
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    try:
        check_file(str(path), [], Catalog(), {})
    except SpecError as exc:
        message = str(exc)
    else:
        raise AssertionError("expected a SpecError")
    assert "field 'defaults.retry.max_attempts'" in message
    assert "field 'retry.initial_delay'" in message
    assert "field 'retry.multiplier'" in message
    assert "plugin 'no-such-plugin': no plugin of that name" in message
    assert "value 'not-a-number' is rejected" in message
