"""Two processes, one store: two ``flowhost resume`` of one run at once, ten ``flowhost run``
at once on a state dir that does not exist yet, and a daemon and the CLI on one state dir.
One process runs a run at a time (the other is refused, saying why), no run is lost or
doubled, no step runs twice, and nobody sees "database is locked" (each write waits for
another process's, up to ``FLOWHOST_LOCK_TIMEOUT`` seconds, README "State")."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_servers import flowhost
from tallies import SEED, Snapshot, begun, ran_again, report, snapshot, tally, tally_spec
from test_daemon_support import StartDaemon, start_daemons, submit, wait_file, wait_for
from test_resume_kill import start

ROUNDS = 3


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def ended(folder: Path) -> int:
    return sum(what == "end" for what, _, _ in tally(folder))


def output_of(proc: subprocess.Popen[bytes], out: Path, timeout: float = 120) -> str:
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.read_text("utf-8", "replace")


def killed_midway(folder: Path, state: Path, after_steps: int) -> tuple[str, Snapshot]:
    """A ``flowhost run`` SIGKILLed once ``after_steps`` steps ended: its id, and what the
    store had finished then."""
    proc, out = start(folder, "run", "wf.yaml", "--state-dir", str(state))
    try:
        deadline = time.monotonic() + 60
        while ended(folder) < after_steps:
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    run_id = out.read_text().splitlines()[0].removeprefix("run_id: ")
    return run_id, snapshot(state, run_id, folder)


def no_step_twice_since(shot: Snapshot, folder: Path) -> None:
    """Since the snapshot, no step began more than once, and none it had finished began."""
    since = [label for what, label, _ in tally(folder)[shot.lines:] if what == "begin"]
    assert len(since) == len(set(since)), f"a step ran twice: {since}"
    assert ran_again([shot], folder) == []


def test_two_resumes_of_one_run_at_once_one_refuses_the_other_finishes(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rnd = random.Random(SEED)
    state = tmp_path / "state"
    refused_busy = refused_done = 0
    for round_no in range(ROUNDS):
        folder = tmp_path / f"round-{round_no}"
        folder.mkdir()
        (folder / "wf.yaml").write_text(tally_spec(
            "twice", rnd, branches=2, depth=2, tail=2, seconds=(0.15, 0.3)), encoding="utf-8")
        run_id, shot = killed_midway(folder, state, after_steps=rnd.randint(1, 4))
        both = [start(folder, "resume", run_id, "--state-dir", str(state)) for _ in range(2)]
        outputs = [output_of(proc, out) for proc, out in both]
        codes = sorted(proc.returncode for proc, _ in both)
        assert codes == [0, 2], outputs
        refusal = next(text for (proc, _), text in zip(both, outputs, strict=True)
                       if proc.returncode == 2)
        assert "Traceback" not in "".join(outputs)
        if "being run by another process" in refusal:
            refused_busy += 1
            assert "wait for it to end, or stop it, then resume" in refusal
        else:  # the first was done before the second looked
            assert "already finished (success)" in refusal, refusal
            refused_done += 1
        no_step_twice_since(shot, folder)
        listed = json.loads(flowhost("runs", "list", "--json", "--state-dir", str(state),
                                     cwd=folder).stdout)
        assert [(r["run_id"], r["status"]) for r in listed if r["run_id"] == run_id] == [
            (run_id, "success")]
    report(request, "shared store, two resumes at once", seed=SEED, rounds=ROUNDS,
           refused_busy=refused_busy, refused_finished=refused_done)


def test_ten_runs_at_once_on_a_new_state_dir_all_finish(tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    rnd = random.Random(SEED)
    state = tmp_path / "state"  # none yet: ten processes make it at once
    spec = tally_spec("ten", rnd, branches=2, depth=1, tail=1, seconds=(0.0, 0.05))
    folders = [tmp_path / f"run-{n}" for n in range(10)]
    for folder in folders:
        folder.mkdir()
        (folder / "wf.yaml").write_text(spec, encoding="utf-8")
    procs = [start(folder, "run", "wf.yaml", "--state-dir", str(state)) for folder in folders]
    outputs = [output_of(proc, out) for proc, out in procs]
    assert [proc.returncode for proc, _ in procs] == [0] * 10, outputs
    assert not [text for text in outputs if "locked" in text or "Traceback" in text]
    ids = {text.splitlines()[0].removeprefix("run_id: ") for text in outputs}
    assert len(ids) == 10
    listed = json.loads(flowhost("runs", "list", "--json", "--state-dir", str(state),
                                 cwd=tmp_path).stdout)
    assert {(r["run_id"], r["status"], r["steps_completed"]) for r in listed} == {
        (run_id, "success", 5) for run_id in ids}
    for folder in folders:
        assert set(begun(folder).values()) == {1}  # every step once
    report(request, "shared store, ten runs at once", runs=len(ids))


def daemon_runs(stub: Any, state: Path, count: int, rnd: random.Random) -> list[str]:
    return [submit(stub, tally_spec("served", rnd, branches=2, depth=1, tail=1,
                                    seconds=(0.05, 0.15))) for _ in range(count)]


def test_a_daemon_and_the_cli_share_a_state_dir(daemon: StartDaemon, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    rnd = random.Random(SEED)
    served = daemon("--max-runs", "2")
    state, stub = served.state_dir, served.stub()
    spec = tally_spec("cli", rnd, branches=2, depth=1, tail=1, seconds=(0.05, 0.15))
    folders = [tmp_path / f"cli-{n}" for n in range(4)]
    for folder in folders:
        folder.mkdir()
        (folder / "wf.yaml").write_text(spec, encoding="utf-8")

    # A daemon run held at a gate: the CLI may not resume it while a worker runs it.
    gated = submit(stub, f"workflow_id: gated\nsteps:\n  - {{id: g, plugin: gate, inputs: "
                         f"{{started: '{tmp_path / 'started'}', release: "
                         f"'{tmp_path / 'release'}'}}}}\n")
    wait_file(tmp_path / "started")
    busy = flowhost("resume", gated, "--state-dir", str(state), cwd=tmp_path)
    assert busy.returncode == 2 and "being run by another process" in busy.stderr

    # A CLI run killed: not the daemon's to go on with, even after the daemon restarts.
    killed, shot = killed_midway(folders[0], state, after_steps=2)
    served_runs = daemon_runs(stub, state, 3, rnd)
    clis = [start(folder, "run", "wf.yaml", "--state-dir", str(state))
            for folder in folders[1:]]
    (tmp_path / "release").touch()
    shots = [snapshot(state, run_id, state / "runs" / run_id) for run_id in served_runs]
    served.stop(signal.SIGKILL)  # in the middle of its runs, and of the CLI's
    served = daemon("--max-runs", "2")
    stub = served.stub()
    later = daemon_runs(stub, state, 2, rnd)
    outputs = [output_of(proc, out) for proc, out in clis]
    assert [proc.returncode for proc, _ in clis] == [0] * len(clis), outputs
    assert not [text for text in outputs if "locked" in text or "Traceback" in text]
    for run_id in [gated, *served_runs, *later]:
        assert wait_for(stub, run_id, timeout=120)["status"] == "success", run_id
    for shot_of_run in shots:  # steps in flight at the kill may run again, no finished one
        assert ran_again([shot_of_run], state / "runs" / shot_of_run.run_id) == []
    assert len(tally(folders[0])) == shot.lines  # nobody went on with the killed one
    resumed = flowhost("resume", killed, "--state-dir", str(state), cwd=folders[0])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    no_step_twice_since(shot, folders[0])

    listed = json.loads(flowhost("runs", "list", "--json", "--state-dir", str(state),
                                 cwd=tmp_path).stdout)
    cli_ids = {text.splitlines()[0].removeprefix("run_id: ") for text in outputs}
    every = {gated, killed, *served_runs, *later, *cli_ids}
    assert len(every) == 2 + len(served_runs) + len(later) + len(cli_ids)  # all distinct
    assert {r["run_id"]: r["status"] for r in listed} == dict.fromkeys(every, "success")
    for folder in [*folders[1:], *(state / "runs" / run_id for run_id in later)]:
        assert set(begun(folder).values()) == {1}, folder  # nothing doubled
    report(request, "shared store, daemon and CLI", seed=SEED,
           daemon_runs=len(served_runs) + len(later) + 1, cli_runs=len(cli_ids) + 1,
           daemon_restarts=1)
