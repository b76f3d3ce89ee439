"""Questions to a person under the real daemon: answered while the run's other branches
still run (the worker goes on with the step at once), parked once nothing else runs, and
bounded by the step's ``manual.timeout`` (its default applies, by "timeout", even when the
deadline passed while the daemon was down)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_daemon_support import (
    StartDaemon,
    code_of,
    result,
    start_daemons,
    submit,
    wait_file,
    wait_for,
    watch,
)

from flowhost._proto import host_pb2 as pb
from flowhost.events import InterventionRequested, InterventionResolved
from flowhost.store import Store


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def branches(folder: Path, manual: str = "{}") -> str:
    """A step that needs a person, its dependent, and a long step beside them (``gate``:
    it ends when the test writes ``release``)."""
    return (f"workflow_id: branches\nsteps:\n"
            f"  - id: a\n    plugin: fail\n    inputs: {{kind: intervention, message: needs "
            f"a person}}\n    manual: {manual}\n"
            f"  - id: b\n    plugin: echo\n    inputs: {{text: $a.never}}\n"
            f"  - id: g\n    plugin: gate\n    inputs: {{started: '{folder / 'g.started'}', "
            f"release: '{folder / 'release'}', seconds: 120}}\n")


def steps_of(found: dict[str, Any]) -> dict[str, str]:
    return {step["id"]: step["status"] for step in found["steps"]}


def wait_until(stub: Any, run_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = result(stub, run_id)
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never got there: {steps_of(found)}")
        time.sleep(0.05)


def resolve(stub: Any, run_id: str, action: str, outputs: bytes = b"",
            comment: str = "") -> Any:
    return stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="a", action=action, outputs_json=outputs, comment=comment),
        timeout=30)


def types(stub: Any, run_id: str) -> list[tuple[str, str]]:
    return [(e.type, json.loads(e.event_json).get("status", "")) for e in watch(stub, run_id)]


def test_an_answer_reaches_the_running_worker_while_other_branches_run(
        daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon().stub()
    run_id = submit(stub, branches(tmp_path))
    wait_file(tmp_path / "g.started")
    asking = wait_until(stub, run_id, lambda r: steps_of(r)["a"] == "waiting")
    assert asking["status"] == "running"  # the long step still runs: the run does not park
    answer = resolve(stub, run_id, "skip", b'{"never": "given"}', "by hand")
    assert answer.resolved_by and answer.resolved_at > 0
    code, details = code_of(lambda: resolve(stub, run_id, "abort"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and answer.resolved_by in details
    # the dependent goes on at once, while the long step still runs
    going = wait_until(stub, run_id, lambda r: steps_of(r)["b"] == "success")
    assert going["status"] == "running" and steps_of(going)["g"] == "running"
    (tmp_path / "release").write_text("go")
    done = wait_for(stub, run_id)
    assert done["status"] == "success" and done["outputs"]["b"]["text"] == "given"
    [decision] = done["decisions"]
    assert (decision["action"], decision["comment"]) == ("skip", "by hand")
    assert decision["at"] == answer.resolved_at
    seen = types(stub, run_id)
    assert seen.count(("RunStarted", "")) == 1  # never parked, never taken up again
    assert [s for t, s in seen if t == "RunFinished"] == ["success"]


def test_a_question_parks_once_nothing_else_of_the_run_executes(
        daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon("--max-runs", "1").stub()
    run_id = submit(stub, branches(tmp_path))
    wait_file(tmp_path / "g.started")
    wait_until(stub, run_id, lambda r: steps_of(r)["a"] == "waiting")
    (tmp_path / "release").write_text("go")
    wait_for(stub, run_id, ["waiting"])
    # parked: its worker is free for another run (one at a time here)
    other = submit(stub, "workflow_id: other\nsteps:\n  - {plugin: echo, inputs: {text: x}}\n")
    assert wait_for(stub, other)["status"] == "success"
    resolve(stub, run_id, "skip", b'{"never": "later"}')
    done = wait_for(stub, run_id)
    assert done["status"] == "success" and done["outputs"]["b"]["text"] == "later"
    assert [s for t, s in types(stub, run_id) if t == "RunFinished"] == ["waiting", "success"]


def test_a_timeout_while_other_branches_run_applies_the_default_in_the_worker(
        daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon().stub()
    run_id = submit(stub, branches(tmp_path, "{timeout: 1, default: skip}"))
    wait_file(tmp_path / "g.started")
    skipped = wait_until(stub, run_id, lambda r: steps_of(r)["a"] == "skipped")
    assert steps_of(skipped) == {"a": "skipped", "b": "skipped", "g": "running"}
    code, details = code_of(lambda: resolve(stub, run_id, "retry"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "by timeout" in details
    (tmp_path / "release").write_text("go")
    done = wait_for(stub, run_id)
    assert done["status"] == "success"
    [decision] = done["decisions"]
    assert (decision["action"], decision["by"]) == ("skip", "timeout")
    assert [s for t, s in types(stub, run_id) if t == "RunFinished"] == ["success"]


def test_a_waiting_runs_default_applies_when_its_time_is_up_across_a_restart(
        daemon: StartDaemon, tmp_path: Path) -> None:
    text = ("workflow_id: asks\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
            "intervention}\n    manual: {timeout: 4, default: fail}\n    on_failure: continue\n"
            "  - {id: b, plugin: echo, inputs: {text: $a.never}}\n"
            "  - {id: c, plugin: echo, inputs: {text: fine}}\n")
    first = daemon()
    stub = first.stub()
    run_id = submit(stub, text)
    wait_for(stub, run_id, ["waiting"])
    assert first.stop(signal.SIGTERM) == 0
    with Store.open(first.state_dir) as store:
        events = store.events(store.run(run_id))
    [asked] = [e for e in events if isinstance(e, InterventionRequested)]
    assert not [e for e in events if isinstance(e, InterventionResolved)]  # still open
    time.sleep(max(asked.ts + 4 - time.time(), 0) + 0.2)  # the deadline passes meanwhile
    stub = daemon(state=first.state_dir).stub()
    done = wait_for(stub, run_id)
    assert done["status"] == "success"  # `fail`: the step failed, and on_failure continues
    assert steps_of(done) == {"a": "failed", "b": "skipped", "c": "success"}
    [decision] = done["decisions"]
    assert (decision["action"], decision["by"]) == ("fail", "timeout")
    assert decision["at"] == asked.ts + 4
    code, details = code_of(lambda: resolve(stub, run_id, "retry"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "fail by timeout" in details
