"""The daemon's API end to end: the real ``flowhost serve`` and a raw grpcio client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from test_daemon_support import (
    StartDaemon,
    code_of,
    meta,
    result,
    start_daemons,
    submit,
    wait_file,
    wait_for,
    watch,
)

from flowhost._proto import host_pb2 as pb

CHAIN = """\
workflow_id: chain
steps:
  - id: a
    plugin: echo
    inputs: {text: hello}
  - id: b
    plugin: echo
    inputs: {text: $a.text}
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)



def gate_spec(folder: Path, name: str = "g", seconds: float = 60) -> str:
    return (f"workflow_id: gated\nsteps:\n  - id: {name}\n    plugin: gate\n    inputs: "
            f"{{started: '{folder / (name + '.started')}', release: '{folder / 'release'}', "
            f"seconds: {seconds}}}\n")


def test_submit_watch_and_result(daemon: StartDaemon) -> None:
    served = daemon()
    stub = served.stub()
    run_id = submit(stub, CHAIN, name="chain.yaml")
    events = watch(stub, run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "RunStarted" and events[-1].type == "RunFinished"
    finished = [e for e in events if e.type == "StepFinished"]
    assert [e.step_id for e in finished] == ["a", "b"]
    assert json.loads(finished[1].event_json)["outputs"]["text"] == "hello"
    assert all(e.run_id == run_id and e.at > 0 for e in events)
    found = result(stub, run_id)
    assert found["status"] == "success" and found["outputs"]["b"]["text"] == "hello"
    workdir = Path(found["workdir"])
    assert workdir == served.state_dir / "runs" / run_id and workdir.is_dir()
    # watching a finished run replays it and ends; after the last seq, nothing
    assert [e.seq for e in watch(stub, run_id, after_seq=3)] == [e.seq for e in events[3:]]
    assert watch(stub, run_id, after_seq=len(events)) == []


def test_one_run_per_request_id_under_concurrent_submits(daemon: StartDaemon) -> None:
    stub = daemon().stub()
    request = pb.SubmitRunRequest(spec_yaml=CHAIN, request_id="deploy-42")
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: stub.SubmitRun(request, timeout=60), range(100)))
    assert len({a.run_id for a in answers}) == 1
    assert sum(a.created for a in answers) == 1
    again = stub.SubmitRun(request, timeout=60)
    assert again.run_id == answers[0].run_id and not again.created
    listed = stub.ListRuns(pb.ListRunsRequest(), timeout=30)
    assert [r.run_id for r in listed.runs] == [answers[0].run_id]
    assert wait_for(stub, again.run_id)["status"] == "success"


def test_bad_spec_is_invalid_argument_with_the_clis_message(daemon: StartDaemon) -> None:
    stub = daemon().stub()
    text = "workflow_id: x\nsteps:\n  - id: a\n    plugin: no-such-plugin\n"
    code, details = code_of(lambda: submit(stub, text, name="mine.yaml"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "mine.yaml:4" in details and "no-such-plugin" in details
    code, details = code_of(lambda: submit(stub, "steps: [1, 2"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "submitted.yaml" in details
    code, _ = code_of(lambda: stub.SubmitRun(pb.SubmitRunRequest(), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = code_of(lambda: submit(stub, CHAIN, overrides={"a.nope": "1"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in details


def test_unknown_run_or_step_is_not_found(daemon: StartDaemon) -> None:
    stub = daemon().stub()
    calls = [
        lambda: stub.GetRun(pb.GetRunRequest(run_id="nope"), timeout=10),
        lambda: list(stub.WatchRun(pb.WatchRunRequest(run_id="nope"), timeout=10)),
        lambda: stub.CancelRun(pb.CancelRunRequest(run_id="nope"), timeout=10),
        lambda: stub.ResolveIntervention(pb.ResolveInterventionRequest(
            run_id="nope", step_id="a", action="skip"), timeout=10),
    ]
    for call in calls:
        assert code_of(call)[0] == grpc.StatusCode.NOT_FOUND
    run_id = submit(stub, CHAIN)
    wait_for(stub, run_id)
    code, details = code_of(lambda: stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="zz", action="skip"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "zz" in details
    code, _ = code_of(lambda: stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="a", action="skip"), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = code_of(lambda: stub.ListRuns(pb.ListRunsRequest(page_token="garbage"),
                                            timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(lambda: stub.ListRuns(pb.ListRunsRequest(page_size=1001), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_list_runs_pages_newest_first(daemon: StartDaemon) -> None:
    stub = daemon().stub()
    ids = [submit(stub, CHAIN) for _ in range(5)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stub.ListRuns(pb.ListRunsRequest(page_size=2, page_token=token), timeout=10)
        seen += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1] and pages == 3
    only = stub.ListRuns(pb.ListRunsRequest(workflow_id="other"), timeout=10)
    assert list(only.runs) == []


def test_specs_read_only_the_allowed_environment(daemon: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "flowhost.toml").write_text('[serve]\nenv_allow = ["FLOWHOST_GREETING"]\n')
    stub = daemon(env={"FLOWHOST_GREETING": "hi there", "FLOWHOST_HIDDEN": "x"}).stub()
    hidden = CHAIN.replace("text: hello", "text: '${env.FLOWHOST_HIDDEN}'")
    code, details = code_of(lambda: submit(stub, hidden))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "FLOWHOST_HIDDEN" in details and "env_allow" in details
    assert "FLOWHOST_GREETING" in details  # the allow-list is named
    allowed = CHAIN.replace("text: hello", "text: '${env.FLOWHOST_GREETING}'")
    run_id = submit(stub, allowed)
    assert wait_for(stub, run_id)["outputs"]["b"]["text"] == "hi there"


def test_a_person_answers_over_the_api_and_only_the_first_answer_counts(
        daemon: StartDaemon, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:secret-a\nbob:secret-b\n")
    served = daemon("--token-file", str(tokens))
    alice, bob = served.stub(token="secret-a"), served.stub(token="secret-b")
    text = ("workflow_id: asks\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
            "intervention, message: needs a person}\n  - id: b\n    plugin: echo\n"
            "    inputs: {text: $a.never}\n")
    run_id = submit(alice, text)
    waiting = wait_for(alice, run_id, ["waiting"])
    assert waiting["steps"][0]["status"] == "waiting"

    def resolve(stub: object, outputs: bytes, comment: str = "") -> object:
        return stub.ResolveIntervention(  # type: ignore[attr-defined]
            pb.ResolveInterventionRequest(run_id=run_id, step_id="a", action="skip",
                                          outputs_json=outputs, comment=comment),
            timeout=30, **meta(stub))

    code, details = code_of(lambda: resolve(alice, b'{"never": 3}'))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "never" in details
    answer = resolve(alice, b'{"never": "given"}', "checked by hand")
    assert answer.resolved_by == "alice" and answer.resolved_at > 0  # type: ignore[attr-defined]
    code, details = code_of(lambda: resolve(bob, b'{"never": "other"}'))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alice" in details
    done = wait_for(alice, run_id)
    assert done["status"] == "success" and done["outputs"]["b"]["text"] == "given"
    [decision] = done["decisions"]
    assert decision["by"] == "alice" and decision["comment"] == "checked by hand"
    assert decision["action"] == "skip" and decision["at"] > 0
    code, details = code_of(lambda: resolve(bob, b'{"never": "late"}'))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "alice" in details


def test_cancel_a_running_and_a_queued_run(daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon("--max-runs", "1").stub()
    running = submit(stub, gate_spec(tmp_path, "one"))
    queued = submit(stub, gate_spec(tmp_path, "two"))
    wait_file(tmp_path / "one.started")
    assert result(stub, queued)["status"] == "queued"
    answer = stub.CancelRun(pb.CancelRunRequest(run_id=queued, reason="not needed"),
                            timeout=30)
    assert answer.status == "cancelled"
    answer = stub.CancelRun(pb.CancelRunRequest(run_id=running, reason="stop it"), timeout=30)
    assert answer.status == "cancelled"
    found = result(stub, running)
    assert found["status"] == "cancelled" and found["steps"][0]["status"] == "cancelled"
    assert result(stub, queued)["status"] == "cancelled"
    assert not (tmp_path / "two.started").exists()
    events = watch(stub, running)
    assert events[-1].type == "RunFinished"
    assert json.loads(events[-1].event_json)["status"] == "cancelled"
    # a cancelled run is final: cancelling again says so, a new run still runs
    assert stub.CancelRun(pb.CancelRunRequest(run_id=running), timeout=30).status == \
        "cancelled"
    assert wait_for(stub, submit(stub, CHAIN))["status"] == "success"


def test_a_waiting_run_holds_no_worker(daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon("--max-runs", "1").stub()
    asks = submit(stub, "workflow_id: asks\nsteps:\n  - {id: a, plugin: fail, inputs: {kind: "
                        "intervention}}\n")
    wait_for(stub, asks, ["waiting"])
    assert wait_for(stub, submit(stub, CHAIN))["status"] == "success"
    assert result(stub, asks)["status"] == "waiting"
    cancelled = stub.CancelRun(pb.CancelRunRequest(run_id=asks), timeout=30)
    assert cancelled.status == "cancelled"
    found = result(stub, asks)
    assert found["status"] == "cancelled" and found["steps"][0]["status"] == "cancelled"


def test_a_worker_executes_one_run_after_another(daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon("--max-runs", "1").stub()
    (tmp_path / "release").write_text("at once")
    for name in ("one", "two"):
        assert wait_for(stub, submit(stub, gate_spec(tmp_path, name)))["status"] == "success"
    # the same process: starting a worker costs more than most runs
    assert (tmp_path / "one.started").read_text() == (tmp_path / "two.started").read_text()


def test_two_submissions_that_draw_the_same_run_id_get_a_run_each(tmp_path: Path) -> None:
    from flowhost.daemon import records
    from flowhost.store import Store

    drawn = iter(["20260101-000000-abcdef", "20260101-000000-abcdef", "20260101-000000-123456"])
    checked = {"workflow_id": "w", "spec_text": CHAIN, "spec_name": "w.yaml",
               "spec_redacted": False, "overrides": [], "total_steps": 2}
    with Store.open(tmp_path / "state") as store:
        first, second = (records.accept(store, request_id=f"r{n}", checked=checked,
                                        new_id=lambda: next(drawn)) for n in (1, 2))
    assert first.created and second.created
    assert (first.record.run_id, second.record.run_id) == (
        "20260101-000000-abcdef", "20260101-000000-123456")


def test_requests_are_bounded(daemon: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "flowhost.toml").write_text('[serve]\nlisten = "127.0.0.1:1"\nmax_runs = 2\n')
    stub = daemon().stub()  # --listen given: the flag wins over [serve]
    huge = CHAIN + "# " + "x" * (3 * 1024 * 1024) + "\n"
    code, details = code_of(lambda: submit(stub, huge))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "larger than" in details
    code, _ = code_of(lambda: submit(stub, CHAIN + "# " + "x" * (5 * 1024 * 1024) + "\n"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, _ = code_of(lambda: stub.WatchRun(pb.WatchRunRequest(run_id="x", after_seq=-1),
                                            timeout=10).next())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert wait_for(stub, submit(stub, CHAIN))["status"] == "success"
