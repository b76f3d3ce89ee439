"""The DAG scheduler, end to end in process, with real entry-point plugins."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest

from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import (
    AttemptFailed,
    CacheRejected,
    Event,
    EventBus,
    RunFinished,
    RunStarted,
    StepFinished,
    StepProgress,
    StepStarted,
)
from flowhost.result import RunResult, fold
from flowhost.run_state import Earlier
from flowhost.spec_loading import parse_spec
from flowhost.static import check


async def run(text: str, env: dict[str, str] | None = None, max_parallel: int = 8,
              cancel_after: float | None = None) -> tuple[str, RunResult, list[Event]]:
    plan = check(parse_spec(text, "wf.yaml"), Catalog(), env or {})
    bus = EventBus()
    engine = Engine(plan, bus, env=env or {}, max_parallel=max_parallel)
    if cancel_after is not None:
        asyncio.get_running_loop().call_later(cancel_after, engine.cancel)
    status = await engine.run()
    assert bus.history is not None
    return status, fold(bus.history), bus.history


def step(result: RunResult, step_id: str) -> Any:
    return next(s for s in result.steps if s.id == step_id)


async def test_chain_passes_typed_outputs() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 3}}
  - {id: b, plugin: echo, inputs: {text: "${a.label}!", tags: ["$a.label"], data: {n: $a.items}}}
""")
    assert status == "success"
    assert result.outputs["b"] == {"text": "n3!", "length": 3, "data": {"n": [0, 1, 2]},
                                   "tags": ["n3"]}
    assert result.steps_completed == 2 and result.steps_failed == 0


async def test_sync_plugins_run_off_the_event_loop() -> None:
    status, result, events = await run(
        "workflow_id: w\nsteps:\n  - {plugin: sync-echo, inputs: {text: hi}}\n")
    assert status == "success"
    assert result.outputs["sync-echo"]["thread"].startswith("flowhost-worker")
    assert any(isinstance(e, StepProgress) and e.fraction == 1.0 for e in events)


async def test_independent_steps_run_in_parallel() -> None:
    steps = "\n".join(f"  - {{id: s{i}, plugin: sleeper, inputs: {{seconds: 0.3}}}}"
                      for i in range(6))
    started = time.monotonic()
    status, _, _ = await run(f"workflow_id: w\nsteps:\n{steps}\n", max_parallel=6)
    assert status == "success"
    assert time.monotonic() - started < 1.5  # serially it would take 1.8 s


async def test_max_parallel_bounds_concurrency() -> None:
    steps = "\n".join(f"  - {{id: s{i}, plugin: sleeper, inputs: {{seconds: 0.05}}}}"
                      for i in range(8))
    _, _, events = await run(f"workflow_id: w\nsteps:\n{steps}\n", max_parallel=3)
    running = peak = 0
    for event in events:
        if isinstance(event, StepStarted):
            running += 1
            peak = max(peak, running)
        elif isinstance(event, StepFinished):
            running -= 1
    assert peak == 3


async def test_failure_aborts_and_skips_the_rest() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: first, plugin: sleeper, inputs: {seconds: 0.1}}
  - {id: bad, plugin: fail, inputs: {kind: permanent, message: nope, hint: do X}, needs: [first]}
  - {id: after, plugin: echo, inputs: {text: x}, needs: [bad]}
  - {id: slow, plugin: sleeper, inputs: {seconds: 5}}
  - {id: queued, plugin: sleeper, inputs: {seconds: 5}, needs: [first]}
""", max_parallel=2)
    assert status == "failed"
    bad = step(result, "bad")
    assert (bad.status, bad.error, bad.error_type, bad.hint) == (
        "failed", "nope", "PermanentError", "do X")
    assert step(result, "after").status == "skipped"
    assert step(result, "slow").status == "cancelled"
    assert "bad" in step(result, "slow").reason
    assert step(result, "queued").status == "skipped"  # never started: --max-parallel 2


async def test_a_step_cancelled_before_it_started_is_skipped() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: bad, plugin: fail}
  - {id: other, plugin: sleeper, inputs: {seconds: 5}}
""")
    assert status == "failed"
    assert step(result, "other").status == "skipped"
    assert step(result, "other").reason == "run aborted: step 'bad' failed"


async def test_continue_skips_only_dependents() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: bad, plugin: crash, on_failure: continue}
  - {id: dependent, plugin: echo, inputs: {text: x}, needs: [bad]}
  - {id: transitive, plugin: echo, inputs: {text: $dependent.text}}
  - {id: other, plugin: echo, inputs: {text: y}}
""")
    assert status == "success"
    assert step(result, "bad").error_type == "ZeroDivisionError"
    assert step(result, "bad").error == "division by zero in the plugin"
    assert step(result, "dependent").reason == "step 'bad' failed"
    assert step(result, "transitive").reason == "step 'dependent' was skipped"
    assert step(result, "other").status == "success"
    assert (result.steps_failed, result.steps_skipped, result.steps_completed) == (1, 2, 1)


async def test_output_not_matching_model_names_the_field() -> None:
    status, result, _ = await run("workflow_id: w\nsteps:\n  - {plugin: bad-output}\n")
    assert status == "failed"
    error = step(result, "bad-output").error
    assert "field 'count'" in error and "outputs of bad-output" in error


async def test_timeout_cancels_the_attempt() -> None:
    started = time.monotonic()
    status, result, events = await run("""
workflow_id: w
steps:
  - {plugin: sleeper, inputs: {seconds: 10}, timeout: 0.2}
  - {plugin: sync-sleeper, inputs: {seconds: 10}, timeout: 0.2, on_failure: continue}
""")
    assert time.monotonic() - started < 3
    assert status == "failed"
    failures = [e for e in events if isinstance(e, AttemptFailed)]
    assert {f.error_kind for f in failures} == {"timeout"}
    assert "timed out after 0.2s" in step(result, "sleeper").error


async def test_cancel_stops_running_steps() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: a, plugin: sleeper, inputs: {seconds: 10}}
  - {id: b, plugin: echo, inputs: {text: $a.label}}
""", cancel_after=0.2)
    assert status == "cancelled"
    assert step(result, "a").status == "cancelled"
    assert step(result, "b").status == "pending"


async def test_step_validation_uses_own_outputs(tmp_path: Any) -> None:
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - id: w1
    plugin: file-writer
    inputs: {{directory: "{tmp_path}"}}
    validation:
      - files_exist: ["${{w1.path}}"]
      - python_syntax: ["${{w1.directory}}"]
      - output: {{field: path, matches: "out\\\\.py$"}}
  - id: w2
    plugin: file-writer
    needs: [w1]
    inputs: {{directory: "{tmp_path}/b", content: "def (:"}}
    validation:
      - python_syntax: ["$w2.path"]
""")
    assert status == "failed"
    assert step(result, "w1").status == "success"
    assert [v["passed"] for v in step(result, "w1").validation] == [True, True, True]
    w2 = step(result, "w2")
    assert w2.status == "failed" and w2.error.startswith("validation failed: python_syntax")


async def test_final_validation_collects_test_results(tmp_path: Any) -> None:
    test_file = tmp_path / "test_ok.py"
    test_file.write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    status, result, _ = await run(f"""
workflow_id: w
steps:
  - {{plugin: echo, inputs: {{text: x}}}}
final_validation:
  - command: {{run: ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "{test_file}"],
               cwd: "{tmp_path}"}}
""", env={"PATH": __import__("os").environ["PATH"]})
    assert status == "success", result.final_validation
    assert result.test_results is not None
    assert result.test_results["total"] == result.test_results["passed"] == 2
    assert result.test_results["failed"] == 0


async def test_secrets_never_reach_the_result(tmp_path: Any) -> None:
    _, result, events = await run(f"""
workflow_id: w
steps:
  - id: w
    plugin: file-writer
    inputs:
      directory: "{tmp_path}"
      secret: "${{secret.TOKEN}}"
      filename: "${{secret.TOKEN}}.py"
  - {{plugin: fail, inputs: {{message: "bad token ${{secret.TOKEN}}",
                              hint: "try ${{secret.TOKEN}} again"}}, needs: [w]}}
""", env={"TOKEN": "hunter2-very-secret"})
    assert (tmp_path / "secret.txt").read_text() == "hunter2-very-secret"  # the plugin got it
    dumped = result.model_dump_json()
    assert "hunter2" not in dumped
    assert "***" in dumped
    assert all("hunter2" not in repr(e) for e in events)


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def lookup(self, step: Any, inputs: dict[str, Any]) -> dict[str, Any] | None:
        return self.data.get(f"{step.invoker.name}:{inputs}")

    def store(self, step: Any, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.data[f"{step.invoker.name}:{inputs}"] = outputs


async def test_cache_hits_are_revalidated(tmp_path: Any) -> None:
    text = f"""
workflow_id: w
steps:
  - id: w1
    plugin: file-writer
    cache: true
    inputs: {{directory: "{tmp_path}/out"}}
    validation: [{{files_exist: ["$w1.path"]}}]
"""
    plan = check(parse_spec(text, "wf.yaml"), Catalog(), {})
    cache = DictCache()

    rejected: list[CacheRejected] = []

    async def once() -> RunResult:
        bus = EventBus()
        bus.subscribe(lambda e: rejected.append(e) if isinstance(e, CacheRejected) else None)
        assert await Engine(plan, bus, env={}, cache=cache).run() == "success"
        assert bus.history is not None
        return fold(bus.history)

    assert step(await once(), "w1").cached is False
    assert step(await once(), "w1").cached is True
    assert rejected == []
    (tmp_path / "out" / "out.py").unlink()
    again = step(await once(), "w1")
    assert again.cached is False and again.attempts == 1
    assert [e.step_id for e in rejected] == ["w1"] and "files_exist" in rejected[0].reason
    assert (tmp_path / "out" / "out.py").exists()


async def test_restored_steps_never_run_again() -> None:
    text = """
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 2}}
  - {id: b, plugin: numbers, inputs: {count: $a.count}}
  - {id: c, plugin: echo, inputs: {text: "${b.label}"}}
"""
    plan = check(parse_spec(text, "wf.yaml"), Catalog(), {})
    done = StepFinished(run_id="r", step_id="a", plugin="numbers", used_plugin="numbers",
                        status="success", attempts=1, duration_s=0.1,
                        outputs={"count": 7, "label": "n7", "items": []})
    bus = EventBus()
    engine = Engine(plan, bus, run_id="r", env={},
                    earlier=Earlier(restored={"a": done}, rerun=frozenset({"b"})))
    assert await engine.run() == "success"
    assert bus.history is not None
    started = [e.step_id for e in bus.history if isinstance(e, StepStarted)]
    assert started == ["b", "c"]
    result = fold(bus.history)
    assert result.outputs["c"]["text"] == "n7"
    assert step(result, "b").rerun_after_interruption is True


async def test_cancel_before_the_run_starts_runs_nothing() -> None:
    plan = check(parse_spec("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: {text: x}}\n",
                            "wf.yaml"), Catalog(), {})
    bus = EventBus()
    engine = Engine(plan, bus, env={})
    engine.cancel("stop")
    assert await engine.run() == "cancelled"
    assert bus.history is not None
    assert not any(isinstance(e, StepStarted) for e in bus.history)


def test_the_result_of_a_run_over_several_processes_spans_them_all() -> None:
    steps = (("a", "noop", ""), ("b", "noop", ""))

    def begin(ts: float) -> RunStarted:
        return RunStarted(run_id="r", ts=ts, workflow_id="w", description="", total_steps=2,
                          steps=steps)

    def done(step_id: str, ts: float) -> StepFinished:
        return StepFinished("r", step_id, "noop", "noop", "success", 1, 1.0, {"value": 1},
                            ts=ts)

    killed = [begin(100.0), StepStarted("r", "a", "noop", "", 1, 2, ts=100.5), done("a", 103.0),
              StepStarted("r", "b", "noop", "", 2, 2, ts=103.0)]  # kill -9 here
    resumed = [begin(500.0), StepStarted("r", "b", "noop", "", 2, 2, True, ts=500.0),
               done("b", 502.0), RunFinished(run_id="r", ts=502.5, status="success",
                                             duration_s=2.5)]
    assert fold(killed).execution_time_s == 3.0  # so far: up to its last event
    result = fold([*killed, *resumed])
    assert result.execution_time_s == 5.5  # 3.0 in the first process, 2.5 in the second
    assert result.started_at == 100.0 and result.finished_at == 502.5
    assert [s.status for s in result.steps] == ["success", "success"]
    assert result.steps[1].rerun_after_interruption is True


async def test_output_checks_in_final_validation_read_step_id_dot_field() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: a, plugin: echo, inputs: {text: hello}}
final_validation:
  - output: {field: a.text, equals: hello}
  - output: {field: a.length, in: [1, 2]}
""")
    assert status == "failed"
    assert [c["passed"] for c in result.final_validation] == [True, False]
    assert result.final_validation[0]["message"] == 'a.text = "hello"'
    assert "a.length = 5" in result.final_validation[1]["message"]


@pytest.mark.parametrize("token", ["TOPSECRETPASSWORD", "pässwörd-secret", 'pa"ss\\wd-secret',
                                   "line1\nline2secret"])
async def test_secrets_in_check_messages_are_masked_before_they_are_cut_or_escaped(
        token: str) -> None:
    _, result, events = await run("""
workflow_id: w
steps:
  - id: e
    plugin: echo
    inputs: {text: "${secret.TOKEN}"}
    retry: {max_attempts: 1}
    manual: false
    validation:
      - output: {field: text, equals: other}
      - command:
          run: ["sh", "-c", "printf '%0110d%s\\\\n' 0 \\"$T\\"; exit 1"]
          env: {T: "${secret.TOKEN}"}
""", env={"TOKEN": token, "PATH": os.environ["PATH"]})
    dumped = result.model_dump_json() + "".join(repr(e) for e in events)
    pieces = [token[:8], token[-8:], json.dumps(token)[1:9]]
    assert not [piece for piece in pieces if piece in dumped], dumped
    messages = [c["message"] for c in result.steps[0].validation]
    assert any("***" in m for m in messages), messages


async def test_a_step_cancelled_while_waiting_to_retry_counts_its_failed_attempt() -> None:
    status, result, _ = await run("""
workflow_id: w
steps:
  - {id: f, plugin: fail, inputs: {kind: transient}, retry: {max_attempts: 3, initial_delay: 30}}
""", cancel_after=0.3)
    assert status == "cancelled"
    step = result.steps[0]
    assert step.status == "cancelled" and len(step.failed_attempts) == 1
    assert step.attempts == 1
