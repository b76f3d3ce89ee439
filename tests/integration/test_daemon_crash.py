"""The daemon survives what kills processes: kill -9 of a worker or of the daemon, plugins
that end their process, SIGTERM; and watch streams cut anywhere miss nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

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
from flowhost.store import Store, read


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)



def killer_spec(folder: Path, how: str, times: int) -> str:
    return (f"workflow_id: doomed\nsteps:\n  - id: k\n    plugin: process-killer\n    inputs: "
            f"{{calls: '{folder / 'calls'}', how: '{how}', times: {times}}}\n    manual: false\n")


def gate_spec(folder: Path, seconds: float = 60) -> str:
    return (f"workflow_id: gated\nsteps:\n  - id: first\n    plugin: echo\n    inputs: "
            f"{{text: before}}\n  - id: g\n    plugin: gate\n    inputs: {{started: "
            f"'{folder / 'started'}', release: '{folder / 'release'}', seconds: {seconds}}}\n"
            f"    needs: [first]\n")


def journal_chain(folder: Path, steps: int, seconds: float) -> str:
    lines = ["workflow_id: journaled", "steps:"]
    for n in range(steps):
        value = f"$s{n - 1}.value" if n else "0"
        lines.append(f"  - {{id: s{n}, plugin: journal, inputs: {{journal: "
                     f"'{folder / 'journal.txt'}', label: s{n}, seconds: {seconds}, "
                     f"value: {value}}}}}")
    return "\n".join(lines) + "\n"


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("how", ["os._exit", "segfault"])
def test_a_plugin_that_kills_its_worker_costs_only_its_run(
        daemon: StartDaemon, tmp_path: Path, how: str) -> None:
    stub = daemon().stub()
    (tmp_path / "once").mkdir()
    (tmp_path / "always").mkdir()
    once = submit(stub, killer_spec(tmp_path / "once", how, 1))
    always = submit(stub, killer_spec(tmp_path / "always", how, 100))
    other = submit(stub, "workflow_id: fine\nsteps:\n  - {plugin: echo, inputs: {text: ok}}\n")
    assert wait_for(stub, once)["status"] == "success"  # retried on a new worker
    assert calls(tmp_path / "once" / "calls") == 2
    failed = wait_for(stub, always)
    assert failed["status"] == "failed"
    assert calls(tmp_path / "always" / "calls") == 3  # three worker deaths, then no more
    expected = "SIGSEGV" if how == "segfault" else "exited with code 7"
    assert expected in failed["steps"][0]["error"]
    assert wait_for(stub, other)["status"] == "success"
    events = watch(stub, always)
    assert json.loads(events[-1].event_json)["status"] == "failed"


def test_sys_exit_in_a_plugin_fails_its_step_only(daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon().stub()
    run_id = submit(stub, killer_spec(tmp_path, "sys.exit", 100))
    found = wait_for(stub, run_id)
    assert found["status"] == "failed" and calls(tmp_path / "calls") == 1
    assert wait_for(stub, submit(stub, "workflow_id: ok\nsteps:\n  - {plugin: noop}\n"))[
        "status"] == "success"


def test_kill_9_of_a_worker_runs_its_run_again(daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon().stub()
    run_id = submit(stub, gate_spec(tmp_path))
    worker = int(wait_file(tmp_path / "started"))
    assert worker != os.getpid()
    (tmp_path / "started").unlink()
    os.kill(worker, signal.SIGKILL)
    again = int(wait_file(tmp_path / "started"))
    assert again != worker
    (tmp_path / "release").touch()
    found = wait_for(stub, run_id)
    assert found["status"] == "success"
    step = found["steps"][1]
    assert step["rerun_after_interruption"]
    assert found["steps"][0]["status"] == "success"


def test_kill_9_of_the_daemon_and_a_restart_finish_the_run_without_rerunning_a_step(
        daemon: StartDaemon, tmp_path: Path) -> None:
    first = daemon()
    stub = first.stub()
    run_id = submit(stub, journal_chain(tmp_path, 5, 0.3))
    journal = tmp_path / "journal.txt"
    deadline = time.monotonic() + 30
    while "end s1" not in (journal.read_text() if journal.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.stop(signal.SIGKILL)
    store = Store.open(first.state_dir)
    try:
        done_before = set(read(store.events(store.run(run_id))).finished)
    finally:
        store.close()
    assert {"s0", "s1"} <= done_before
    second = daemon()
    found = wait_for(second.stub(), run_id)
    assert found["status"] == "success"
    begun = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("begin")]
    for label in done_before:
        assert begun.count(label) == 1, (label, begun)
    assert sorted(set(begun)) == [f"s{n}" for n in range(5)]
    assert found["outputs"]["s4"]["value"] == 5


def test_sigterm_drains_and_the_next_start_goes_on(daemon: StartDaemon, tmp_path: Path) -> None:
    first = daemon("--drain-timeout", "1")
    stub = first.stub()
    run_id = submit(stub, gate_spec(tmp_path))
    wait_file(tmp_path / "started")
    stream = stub.WatchRun(pb.WatchRunRequest(run_id=run_id), timeout=60)
    seen = [next(stream)]
    started = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    code = None
    try:
        for event in stream:
            seen.append(event)
    except grpc.RpcError as exc:
        code = exc.code()
    assert code == grpc.StatusCode.UNAVAILABLE
    assert first.proc.wait(30) == 0
    assert time.monotonic() - started < 15
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    last = json.loads(seen[-1].event_json)
    assert seen[-1].type == "RunFinished" and last["status"] == "interrupted"
    (tmp_path / "started").unlink()
    second = daemon("--drain-timeout", "1")
    wait_file(tmp_path / "started")
    (tmp_path / "release").touch()
    found = wait_for(second.stub(), run_id)
    assert found["status"] == "success" and found["steps"][1]["rerun_after_interruption"]
    assert found["steps"][0]["attempts"] == 1  # the finished step did not run again


def test_submit_while_draining_is_unavailable(daemon: StartDaemon, tmp_path: Path) -> None:
    served = daemon("--drain-timeout", "3")
    stub = served.stub()
    submit(stub, gate_spec(tmp_path, seconds=60))
    wait_file(tmp_path / "started")
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    code, details = code_of(lambda: submit(stub, "workflow_id: x\nsteps:\n  - {plugin: noop}\n"))
    assert code == grpc.StatusCode.UNAVAILABLE and "stopping" in details
    assert served.proc.wait(30) == 0


def test_watch_cut_anywhere_and_resumed_sees_every_event_once(
        daemon: StartDaemon, tmp_path: Path) -> None:
    stub = daemon().stub()
    lines = ["workflow_id: many", "steps:"]
    lines += [f"  - {{id: s{n}, plugin: sleeper, inputs: {{seconds: 0.04}}}}" for n in range(8)]
    run_id = submit(stub, "\n".join(lines) + "\n")
    seen: list[int] = []
    cursor, cuts = 0, 0
    while True:
        stream = stub.WatchRun(pb.WatchRunRequest(run_id=run_id, after_seq=cursor), timeout=60)
        ended = True
        for event in stream:
            seen.append(event.seq)
            cursor = event.seq
            if len(seen) % (3 + cuts % 4) == 0:  # cut it here, at various points
                stream.cancel()
                cuts += 1
                ended = False
                break
        if ended:
            break
    assert cuts >= 5
    assert seen == list(range(1, len(seen) + 1))
    assert result(stub, run_id)["status"] == "success"
    assert len(seen) == len(watch(stub, run_id))


def test_queued_runs_survive_a_kill_9_and_keep_their_order(daemon: StartDaemon,
                                                           tmp_path: Path) -> None:
    first = daemon("--max-runs", "1")
    stub = first.stub()
    for n in range(3):
        (tmp_path / f"r{n}").mkdir()
    runs = [submit(stub, journal_chain(tmp_path / f"r{n}", 2, 0.2)) for n in range(3)]
    deadline = time.monotonic() + 30
    while not (tmp_path / "r0" / "journal.txt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.stop(signal.SIGKILL)
    second = daemon("--max-runs", "1")
    done = [wait_for(second.stub(), run_id) for run_id in runs]
    assert [d["status"] for d in done] == ["success"] * 3
    starts = [d["started_at"] for d in done]
    assert starts == sorted(starts)  # one at a time, in the order they were submitted


def test_a_second_sigterm_stops_at_once(daemon: StartDaemon, tmp_path: Path) -> None:
    first = daemon("--drain-timeout", "60")
    stub = first.stub()
    run_id = submit(stub, gate_spec(tmp_path))
    wait_file(tmp_path / "started")
    (tmp_path / "started").unlink()
    first.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(10) != 0
    assert time.monotonic() - started < 5
    second = daemon()
    wait_file(tmp_path / "started")
    (tmp_path / "release").touch()
    assert wait_for(second.stub(), run_id)["status"] == "success"
