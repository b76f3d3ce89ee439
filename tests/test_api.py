"""The Python API (CONTRACT §11): validate, run_workflow, the async runs beneath, and runs
that share one process without seeing each other's files or variables."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

import flowhost
from flowhost.events import Event, InterventionRequested, RunFinished

ISOLATED = """
workflow_id: isolated
steps:
  - id: write
    plugin: file-writer
    inputs: {directory: "out", content: "${env.MARK}"}
    validation:
      - files_exist: ["out/out.py"]
      - command: {run: "sh -c 'test \\"$MARK\\" = \\"$(cat out/out.py)\\"'"}
final_validation:
  - files_exist: ["out/out.py"]
"""


def test_validate_returns_problems_with_their_place(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("workflow_id: w\nsteps: [{id: a, plugin: noop}]\n", encoding="utf-8")
    assert flowhost.validate(good) == []
    bad = "workflow_id: w\nsteps:\n  - {id: a, plugin: noop, inputs: {valu: 1}}\n"
    problems = flowhost.validate(bad, spec_name="bad.yaml")
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.file, problem.line, problem.step) == ("bad.yaml", 3, "a")
    assert problem.field == "inputs.valu" and "has no input" in problem.message


def test_run_workflow_raises_spec_error_for_a_spec_that_does_not_check(tmp_path: Path) -> None:
    with pytest.raises(flowhost.SpecError) as caught:
        flowhost.run_workflow("workflow_id: w\nsteps: [{plugin: nope}]\n", spec_name="x.yaml",
                              workdir=tmp_path)
    assert caught.value.problems[0].field == "plugin"


def test_run_workflow_uses_its_own_workdir_env_and_state_dir(tmp_path: Path) -> None:
    result = flowhost.run_workflow(ISOLATED, spec_name="iso.yaml", workdir=tmp_path,
                                   env={"MARK": "mine", "PATH": os.environ["PATH"]})
    assert isinstance(result, flowhost.RunResult)
    assert result.status == "success", result.model_dump()
    assert (tmp_path / "out" / "out.py").read_text(encoding="utf-8") == "mine"
    assert (tmp_path / ".flowhost" / "state.db").is_file()
    runs = flowhost.list_runs(workdir=tmp_path)
    assert [r.run_id for r in runs] == [result.run_id]
    assert flowhost.get_run(result.run_id, workdir=tmp_path).status == "success"


def test_runs_in_threads_do_not_see_each_others_files_or_variables(tmp_path: Path) -> None:
    results: dict[str, flowhost.RunResult] = {}

    def one(mark: str) -> None:
        results[mark] = flowhost.run_workflow(
            ISOLATED, spec_name="iso.yaml", workdir=tmp_path / mark,
            env={"MARK": mark, "PATH": os.environ["PATH"]})

    for mark in ("a", "b"):
        (tmp_path / mark).mkdir()
    threads = [threading.Thread(target=one, args=(mark,)) for mark in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for mark in ("a", "b"):
        assert results[mark].status == "success", results[mark].model_dump()
        assert (tmp_path / mark / "out" / "out.py").read_text(encoding="utf-8") == mark
    assert "MARK" not in os.environ


async def test_runs_in_one_event_loop_do_not_see_each_others_files_or_variables(
        tmp_path: Path) -> None:
    runs = []
    for mark in ("a", "b"):
        (tmp_path / mark).mkdir()
        runs.append(await flowhost.start_run(
            ISOLATED, spec_name="iso.yaml", workdir=tmp_path / mark,
            env={"MARK": mark, "PATH": os.environ["PATH"]}))
    results = await asyncio.gather(*(run.result() for run in runs))
    assert [r.status for r in results] == ["success", "success"]
    for mark in ("a", "b"):
        assert (tmp_path / mark / "out" / "out.py").read_text(encoding="utf-8") == mark


async def test_events_replay_from_the_start_then_follow_with_seq(tmp_path: Path) -> None:
    run = await flowhost.start_run(
        "workflow_id: w\nsteps: [{id: a, plugin: noop}, {id: b, plugin: noop, inputs: "
        "{value: $a.value}}]\n", spec_name="w.yaml", workdir=tmp_path, env={})
    seen: list[Event] = [event async for event in run.events()]
    assert isinstance(seen[-1], RunFinished) and seen[-1].status == "success"
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    late = [event async for event in run.events()]  # after the end: the whole story again
    assert [type(e) for e in late] == [type(e) for e in seen]


async def test_an_observer_that_raises_is_detached_and_the_run_goes_on(tmp_path: Path) -> None:
    reports: list[str] = []
    calls = 0

    def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the observer broke")

    run = await flowhost.start_run(
        "workflow_id: w\nsteps: [{id: a, plugin: noop}, {id: b, plugin: noop, inputs: "
        "{value: $a.value}}]\n", spec_name="w.yaml", workdir=tmp_path, env={},
        observers=[broken], report=reports.append)
    result = await run.result()
    assert result.status == "success"
    assert calls == 1
    assert len(reports) == 1 and "the observer broke" in reports[0]
    assert "detached" in reports[0]


async def test_events_followed_from_mid_run_are_the_whole_story(tmp_path: Path) -> None:
    spec = "workflow_id: w\nsteps:\n" + "".join(
        f"  - {{id: s{n}, plugin: sleeper, inputs: {{seconds: 0.1}}"
        + (f", needs: [s{n - 1}]" if n else "") + "}\n" for n in range(4))
    run = await flowhost.start_run(spec, spec_name="w.yaml", workdir=tmp_path, env={})
    async for event in run.events():
        if type(event).__name__ == "StepFinished":
            break  # one step done, three to go: follow it afresh from here
    followed = [event async for event in run.events()]
    await run.result()
    whole = [event async for event in run.events()]
    assert [e.seq for e in followed] == [e.seq for e in whole]
    assert [type(e).__name__ for e in whole].count("StepFinished") == 4


async def test_cancel_is_final_and_resume_refuses_it(tmp_path: Path) -> None:
    run = await flowhost.start_run(
        "workflow_id: w\nsteps: [{id: s, plugin: sleeper, inputs: {seconds: 30}}]\n",
        spec_name="w.yaml", workdir=tmp_path, env={})
    async for event in run.events():
        if type(event).__name__ == "StepStarted":
            run.cancel("not needed")
    result = await run.result()
    assert result.status == "cancelled"
    with pytest.raises(flowhost.UserInputError, match="already finished"):
        await flowhost.resume_run(run.run_id, workdir=tmp_path, env={})


async def test_interrupt_then_resume_by_id_finishes(tmp_path: Path) -> None:
    spec = ("workflow_id: w\nsteps: [{id: s, plugin: sleeper, inputs: {seconds: 0.3}}, "
            "{id: e, plugin: echo, inputs: {text: hi}, needs: [s]}]\n")
    run = await flowhost.start_run(spec, spec_name="w.yaml", workdir=tmp_path, env={})
    async for event in run.events():
        if type(event).__name__ == "StepStarted":
            run.interrupt("stopping for now")
    assert (await run.result()).status == "interrupted"
    again = await flowhost.resume_run(run.run_id, workdir=tmp_path, env={})
    result = await again.result()
    assert result.status == "success"
    assert [s.status for s in result.steps] == ["success", "success"]


async def test_questions_wait_for_an_answer_through_the_api(tmp_path: Path) -> None:
    run = await flowhost.start_run(
        "workflow_id: w\nsteps:\n  - {id: f, plugin: fail}\n"
        "  - {id: after, plugin: echo, inputs: {text: $f.never}}\n",
        spec_name="w.yaml", workdir=tmp_path, env={}, on_manual="ask")
    async for event in run.events():
        if isinstance(event, InterventionRequested):
            assert set(run.pending) == {"f"}
            with pytest.raises(flowhost.UserInputError, match="do not fit"):
                await run.resolve("f", "skip", outputs={"never": 3})
            await run.resolve("f", "skip", outputs={"never": "given"})
    result = await run.result()
    assert result.status == "success"
    assert result.outputs["after"]["text"] == "given"
    finished = {s.id: s.status for s in result.steps}
    assert finished == {"f": "skipped", "after": "success"}
    assert not run.pending


DRAINED = """
workflow_id: drained
steps:
  - {id: a, plugin: sleeper, inputs: {seconds: 0.4}}
  - {id: b, plugin: sleeper, inputs: {seconds: 0.4}}
  - {id: c, plugin: echo, inputs: {text: after}, needs: [a, b]}
"""


async def test_a_drain_lets_running_steps_finish_and_leaves_the_rest_to_resume(
        tmp_path: Path) -> None:
    run = await flowhost.start_run(DRAINED, spec_name="d.yaml", workdir=tmp_path, env={})
    async for event in run.events():
        if type(event).__name__ == "StepStarted" and event.step_id == "b":  # type: ignore[attr-defined]
            break
    outcome = await run.drain(timeout=30)
    assert outcome.status == "interrupted"
    assert {s.id: s.status for s in outcome.result.steps} == {
        "a": "success", "b": "success", "c": "pending"}
    again = await flowhost.resume_run(run.run_id, workdir=tmp_path, env={})
    result = await again.result()
    assert result.status == "success"
    assert not any(s.rerun_after_interruption for s in result.steps)


async def test_a_drain_past_its_deadline_interrupts_what_still_runs(tmp_path: Path) -> None:
    run = await flowhost.start_run(
        "workflow_id: w\nsteps: [{id: s, plugin: sleeper, inputs: {seconds: 30}}]\n",
        spec_name="w.yaml", workdir=tmp_path, env={})
    async for event in run.events():
        if type(event).__name__ == "StepStarted":
            break
    outcome = await run.drain(timeout=0.2)
    assert outcome.status == "interrupted"
    assert outcome.result.steps[0].status == "cancelled"


def test_overrides_as_a_mapping_keep_their_types_and_store_names_the_state_dir(
        tmp_path: Path) -> None:
    spec = "workflow_id: w\nsteps: [{id: e, plugin: echo, inputs: {text: x}}]\n"
    result = flowhost.run_workflow(spec, spec_name="w.yaml", workdir=tmp_path, env={},
                                   overrides={"e.text": "007"},
                                   store=f"sqlite://{tmp_path / 'elsewhere'}")
    assert result.outputs["e"]["text"] == "007"  # text stays text
    assert (tmp_path / "elsewhere" / "state.db").is_file()
    assert not (tmp_path / ".flowhost").exists()
    with pytest.raises(flowhost.SpecError, match="--set"):
        flowhost.run_workflow(spec, spec_name="w.yaml", workdir=tmp_path, env={},
                              overrides={"e.text": 7})
    with pytest.raises(flowhost.UserInputError, match="unknown kind of store"):
        flowhost.run_workflow(spec, spec_name="w.yaml", workdir=tmp_path, env={},
                              store="mysql://db/flowhost")
    with pytest.raises(flowhost.UserInputError, match="cannot reach the PostgreSQL server"):
        flowhost.run_workflow(spec, spec_name="w.yaml", workdir=tmp_path, env={},
                              store="postgresql://127.0.0.1:1/flowhost")


async def test_cancelling_one_run_kills_its_check_commands_not_anothers(
        tmp_path: Path) -> None:
    spec = """
workflow_id: w
steps:
  - id: e
    plugin: echo
    inputs: {text: x}
    validation:
      - command: {run: "sh -c 'sleep 1.5; echo done > finished'"}
"""
    env = {"PATH": os.environ["PATH"]}
    runs = {}
    for name in ("stopped", "kept"):
        (tmp_path / name).mkdir()
        runs[name] = await flowhost.start_run(spec, spec_name="w.yaml", env=env,
                                              workdir=tmp_path / name)
    await asyncio.sleep(0.5)  # both commands are running now
    runs["stopped"].cancel("not this one")
    stopped, kept = await asyncio.gather(runs["stopped"].result(), runs["kept"].result())
    assert stopped.status == "cancelled" and kept.status == "success"
    assert (tmp_path / "kept" / "finished").is_file()
    await asyncio.sleep(1.5)  # long enough for a command that was not killed to finish
    assert not (tmp_path / "stopped" / "finished").exists()
