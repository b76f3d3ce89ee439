"""Durable runs through the real CLI: Ctrl-C and resume, waiting runs, `runs`, the state dir's
faults, secrets."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowhost.cli import main
from flowhost.store import Store, steplog

SECRET = "hunter2-very-secret-value"


def flowhost(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "flowhost", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def chain(tmp_path: Path, count: int = 6, seconds: float = 0.3, prefix: str = "") -> Path:
    journal = tmp_path / "journal.txt"
    lines = ["workflow_id: chain", "steps:"]
    for i in range(count):
        value = f"$s{i - 1}.value" if i else "0"
        lines.append(f"  - {{id: s{i}, plugin: journal, inputs: {{journal: '{journal}', "
                     f"label: {prefix}s{i}, seconds: {seconds}, value: {value}}}}}")
    spec = tmp_path / "wf.yaml"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return spec


def journal(tmp_path: Path) -> list[str]:
    """The labels of the completed calls of the journal plugin, in order."""
    path = tmp_path / "journal.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split()[1] for line in lines if line.startswith("end ")]


def wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def run_id_of(output: str) -> str:
    first = output.splitlines()[0]
    assert first.startswith("run_id: "), output
    return first.removeprefix("run_id: ")


def show(tmp_path: Path, run_id: str) -> dict[str, Any]:
    done = flowhost("runs", "show", run_id, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_ctrl_c_checkpoints_then_resume_finishes_the_run(tmp_path: Path) -> None:
    chain(tmp_path)
    proc = start("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    wait_for(lambda: len(journal(tmp_path)) >= 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    run_id = run_id_of(out)
    assert f"Continue with: flowhost resume {run_id}" in err
    interrupted = show(tmp_path, run_id)
    assert interrupted["status"] == "interrupted"  # resumable; "cancelled" is final
    done_before = {s["id"] for s in interrupted["steps"] if s["status"] == "success"}
    cancelled = {s["id"] for s in interrupted["steps"] if s["status"] == "cancelled"}
    assert len(done_before) >= 2 and len(cancelled) == 1

    resumed = flowhost("resume", "--no-progress", "--json-out", "result.json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert run_id_of(resumed.stdout) == run_id
    assert f"{len(done_before)} of 6 steps finished before" in resumed.stdout
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "success" and result["steps_completed"] == 6
    assert result["outputs"]["s5"] == {"label": "s5", "value": 6}
    assert {s["id"] for s in result["steps"] if s["rerun_after_interruption"]} == cancelled
    runs = journal(tmp_path)
    assert sorted(set(runs)) == [f"s{i}" for i in range(6)]
    assert all(runs.count(step) == 1 for step in done_before)  # never ran again
    assert show(tmp_path, run_id) == result  # the store and --json-out agree
    listing = json.loads(flowhost("runs", "list", "--json", cwd=tmp_path).stdout)
    assert [(r["run_id"], r["status"], r["steps_completed"]) for r in listing] == [
        (run_id, "success", 6)]


def test_kill_9_with_checkpoints_only_in_the_step_log_loses_no_finished_step(
        tmp_path: Path) -> None:
    logged = 0  # the kills that came while the step log held the fast steps alone
    for attempt in range(3):  # (a busy machine may move the log into state.db first)
        where = tmp_path / str(attempt)
        where.mkdir()
        logged += kill_during_a_long_step_then_resume(where)
        if logged:
            break
    assert logged


def kill_during_a_long_step_then_resume(tmp_path: Path) -> int:
    """kill -9 while the step after 40 fast ones runs, then resume: no fast step runs
    again. 1 if the fast steps were in the step log alone when the process died."""
    spec = chain(tmp_path, count=40, seconds=0)
    with spec.open("a", encoding="utf-8") as more:  # then one long step, and one after it
        more.write("  - {id: slow, plugin: sleeper, inputs: {seconds: 3}, needs: [s39]}\n"
                   "  - {id: last, plugin: noop, needs: [slow]}\n")
    proc = start("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    try:
        assert proc.stdout is not None
        run_id = run_id_of(proc.stdout.readline())
        for line in proc.stdout:
            if "slow (sleeper) started" in line:
                break
        proc.kill()
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = [log.stat().st_size for log in (tmp_path / ".flowhost" / "steplog").iterdir()]
    shown = show(tmp_path, run_id)
    assert shown["status"] == "interrupted" and shown["steps_completed"] == 40
    resumed = flowhost("resume", run_id, "--no-progress", "--json-out", "result.json",
                       cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "success" and result["steps_completed"] == 42
    runs = journal(tmp_path)
    assert sorted(runs) == sorted(f"s{i}" for i in range(40))  # each fast step ran once
    assert not list((tmp_path / ".flowhost" / "steplog").iterdir())
    return int(len(logs) == 1 and logs[0] > 0)


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path) -> None:
    chain(tmp_path, count=1, seconds=0)
    nothing = flowhost("resume", cwd=tmp_path)
    assert nothing.returncode == 2 and "no flowhost state in " in nothing.stderr
    assert flowhost("runs", "list", cwd=tmp_path).stdout == "No runs in .flowhost.\n"
    assert not (tmp_path / ".flowhost").exists()  # reading commands create nothing
    done = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    run_id = run_id_of(done.stdout)
    finished = flowhost("resume", run_id, cwd=tmp_path)
    assert finished.returncode == 2
    assert f"run {run_id} already finished (success)" in finished.stderr
    nothing = flowhost("resume", cwd=tmp_path)
    assert nothing.returncode == 2 and "no unfinished run to resume" in nothing.stderr
    unknown = flowhost("resume", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr + finished.stderr + nothing.stderr


def test_a_run_another_process_runs_is_not_resumed_twice(tmp_path: Path) -> None:
    chain(tmp_path, count=3, seconds=2)
    proc = start("run", "wf.yaml", "--no-progress", "--state-dir", "state", cwd=tmp_path)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        run_id = run_id_of(line)
        busy = flowhost("resume", run_id, "--state-dir", "state", cwd=tmp_path)
        assert busy.returncode == 2 and "being run by another process" in busy.stderr
        listing = flowhost("runs", "list", "--state-dir", "state", cwd=tmp_path)
        assert "running" in listing.stdout
        nothing = flowhost("resume", "--state-dir", "state", cwd=tmp_path)
        # The only unfinished run is another process's: said so, not "no unfinished run".
        assert nothing.returncode == 2 and "being run by another process" in nothing.stderr
    finally:
        proc.kill()
        proc.communicate()
    listing = flowhost("runs", "list", "--state-dir", "state", cwd=tmp_path)
    assert "interrupted" in listing.stdout  # SIGKILLed: no process runs it any more
    rows = json.loads(flowhost("runs", "list", "--json", "--state-dir", "state",
                               cwd=tmp_path).stdout)
    assert (rows[0]["status"], rows[0]["interrupted"]) == ("interrupted", True)  # §7
    shown = flowhost("runs", "show", run_id, "--state-dir", "state", cwd=tmp_path)
    assert f"flowhost resume {run_id} --state-dir state" in shown.stdout
    as_json = json.loads(flowhost("runs", "show", run_id, "--json", "--state-dir", "state",
                                  cwd=tmp_path).stdout)
    assert (as_json["status"], as_json["interrupted"]) == ("interrupted", True)


def test_state_dir_faults_say_what_to_do(tmp_path: Path) -> None:
    spec = chain(tmp_path, count=1, seconds=0)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "state.db").write_bytes(b"garbage" * 1000)
    (tmp_path / "a-file").write_text("x")
    Store.open(tmp_path / "newer").close()
    with sqlite3.connect(tmp_path / "newer" / "state.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 0)")
    Store.open(tmp_path / "locked").close()
    holder = sqlite3.connect(tmp_path / "locked" / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    cases = {"corrupt": "not a flowhost state database", "a-file": "is a file",
             "newer": "written by a newer flowhost", "locked": "locked for more than 0.3s"}
    try:
        for state, message in cases.items():
            # Readers are never blocked by a writer (WAL): a lock only stops writes.
            readers = [] if state == "locked" else [["runs", "list"], ["resume"]]
            for args in (["run", str(spec)], *readers):
                done = flowhost(*args, "--state-dir", state, cwd=tmp_path,
                                env={"FLOWHOST_LOCK_TIMEOUT": "0.3"})
                # A store that fails is no bad input: a storage failure, exit 1.
                expected = 1 if state == "locked" else 2
                assert done.returncode == expected, (state, args, done.stderr)
                assert message in done.stderr and "Traceback" not in done.stderr
                assert ("storage failure" in done.stderr) == (state == "locked")
        assert flowhost("runs", "list", "--state-dir", "locked", cwd=tmp_path).returncode == 0
    finally:
        holder.execute("ROLLBACK")
    assert journal(tmp_path) == []


def test_a_full_disk_fails_the_run_and_resume_goes_on_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    chain(tmp_path, count=30, seconds=0, prefix="x" * 3000)  # big events fill the disk
    opened, write = Store.open, os.write
    logged = [0]

    def small_disk(state_dir: str | Path, **kwargs: Any) -> Store:
        store = opened(state_dir, **kwargs)
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 40}")
        return store

    def full_log(fd: int, data: Any) -> int:  # the step log's disk: full after 40 KB
        logged[0] += len(data)
        if logged[0] > 40_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Store, "open", small_disk)
    monkeypatch.setattr(steplog.os, "write", full_log)
    assert main(["run", "wf.yaml", "--no-progress", "--state-dir", "state",
                 "--json-out", "failed.json"]) == 1
    out, err = capsys.readouterr()
    run_id = run_id_of(out)
    assert "the disk is full" in err and f"flowhost resume {run_id} --state-dir state" in err
    monkeypatch.setattr(Store, "open", opened)
    monkeypatch.setattr(steplog.os, "write", write)
    # The result says what the state dir says: the fold of what was committed.
    written = json.loads((tmp_path / "failed.json").read_text())
    assert main(["runs", "show", run_id, "--json", "--state-dir", "state"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert written["status"] == shown["status"] == "interrupted"
    assert written["steps_completed"] == shown["steps_completed"] < 30
    assert main(["resume", run_id, "--no-progress", "--state-dir", "state",
                 "--json-out", "result.json"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "success" and result["steps_completed"] == 30
    runs = journal(tmp_path)
    assert len(set(runs)) == 30 and len(runs) <= 31  # at most the step that failed to save


def flaky_workflow(tmp_path: Path) -> Path:
    spec = tmp_path / "wf.yaml"
    spec.write_text(f"""
workflow_id: waiting
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: '{tmp_path / "calls"}', fail_times: 1, kind: intervention,
             hint: "Start the thing"}}
  - id: after
    plugin: echo
    inputs: {{text: $f.value}}
  - id: other
    plugin: noop
""", encoding="utf-8")
    return spec


def wait_run(tmp_path: Path) -> str:
    flaky_workflow(tmp_path)
    done = flowhost("run", "wf.yaml", "--no-progress", "--on-manual", "wait", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    run_id = run_id_of(done.stdout)
    assert f"flowhost runs resolve {run_id} f --action retry" in done.stdout
    assert "Hint: Start the thing" in done.stdout
    assert f"then continue with: flowhost resume {run_id}" in done.stdout
    return run_id


def test_a_waiting_run_is_retried_after_a_decision(tmp_path: Path) -> None:
    run_id = wait_run(tmp_path)
    undecided = flowhost("resume", run_id, cwd=tmp_path)  # no terminal, no --on-manual
    assert undecided.returncode == 3, undecided.stderr
    assert f"flowhost runs resolve {run_id} f --action retry" in undecided.stdout
    assert show(tmp_path, run_id)["status"] == "waiting"
    other = flowhost("runs", "resolve", run_id, "after", "--action", "retry", cwd=tmp_path)
    assert other.returncode == 2 and "waiting: f" in other.stderr
    retry = flowhost("runs", "resolve", run_id, "f", "--action", "retry", cwd=tmp_path)
    assert retry.returncode == 0 and f"flowhost resume {run_id}" in retry.stdout
    again = flowhost("runs", "resolve", run_id, "f", "--action", "skip", cwd=tmp_path)
    assert again.returncode == 2 and "already decided (retry)" in again.stderr
    resumed = flowhost("resume", run_id, "--no-progress", "--json-out", "r.json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "success" and result["outputs"]["after"]["text"] == "good"
    record = next(s for s in result["steps"] if s["id"] == "f")
    assert [i["action"] for i in record["interventions"]] == ["retry"]
    assert not record["rerun_after_interruption"]
    assert (tmp_path / "calls").read_text() == "2"
    assert record["attempts"] == 2 and len(record["failed_attempts"]) == 1


def test_resume_answers_a_waiting_run_with_on_manual(tmp_path: Path) -> None:
    run_id = wait_run(tmp_path)
    still = flowhost("resume", run_id, "--on-manual", "wait", "--no-progress", "--json-out",
                     "waiting.json", cwd=tmp_path)
    assert still.returncode == 3 and "waiting for a decision on step 'f'" in still.stdout
    assert json.loads((tmp_path / "waiting.json").read_text())["status"] == "waiting"
    skipped = flowhost("resume", run_id, "--on-manual", "skip", "--no-progress",
                       "--json-out", "r.json", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    steps = {s["id"]: s for s in result["steps"]}
    assert steps["f"]["status"] == "skipped" and steps["f"]["interventions"][-1]["by"] == "policy"
    assert steps["after"]["status"] == "skipped" and steps["other"]["status"] == "success"
    assert (tmp_path / "calls").read_text() == "1"  # skipping does not call the plugin again


def test_a_waiting_step_skipped_with_outputs_lets_dependents_go_on(tmp_path: Path) -> None:
    run_id = wait_run(tmp_path)
    for bad, message in [("{nope", "not valid JSON"), ("[1]", "must be a JSON object"),
                         ('{"calls": "x", "value": 1}', "do not fit the outputs of flaky")]:
        done = flowhost("runs", "resolve", run_id, "f", "--action", "skip", "--outputs", bad,
                        cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    with_retry = flowhost("runs", "resolve", run_id, "f", "--action", "retry", "--outputs",
                          "{}", cwd=tmp_path)
    assert with_retry.returncode == 2 and "--action skip only" in with_retry.stderr
    done = flowhost("runs", "resolve", run_id, "f", "--action", "skip", "--outputs",
                    '{"calls": 0, "value": "by hand"}', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = flowhost("resume", run_id, "--no-progress", "--json-out", "r.json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    skipped = next(s for s in result["steps"] if s["id"] == "f")
    assert skipped["status"] == "skipped" and "given by user" in skipped["reason"]
    assert result["outputs"]["after"]["text"] == "by hand"
    assert (tmp_path / "calls").read_text() == "1"


def test_a_waiting_run_is_aborted_after_a_decision(tmp_path: Path) -> None:
    run_id = wait_run(tmp_path)
    assert flowhost("runs", "resolve", run_id, "f", "--action", "abort",
                    cwd=tmp_path).returncode == 0
    resumed = flowhost("resume", run_id, "--json-out", "r.json", cwd=tmp_path)
    assert resumed.returncode == 1 and "aborted at step 'f'" in resumed.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    statuses = {s["id"]: s["status"] for s in result["steps"]}
    assert result["status"] == "aborted"
    assert statuses["f"] == "failed" and statuses["after"] == "skipped"
    assert show(tmp_path, run_id) == result
    assert flowhost("resume", run_id, cwd=tmp_path).returncode == 2  # nothing left to do


def test_secrets_never_reach_the_state_dir(tmp_path: Path) -> None:
    journal_file = tmp_path / "journal.txt"
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: secrets
steps:
  - id: a
    plugin: journal
    inputs: {{journal: '{journal_file}', label: "token=${{secret.TOKEN}}"}}
  - id: b
    plugin: echo
    inputs: {{text: plain}}
  - id: literal
    plugin: flaky
    inputs: {{counter_file: calls, kind: intervention, hint: "{SECRET} in clear"}}
""", encoding="utf-8")
    env = {"TOKEN": SECRET}
    done = flowhost("run", "wf.yaml", "--no-progress", "--set", f"b.text=x{SECRET}x",
                    "--on-manual", "wait", cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stderr
    run_id = run_id_of(done.stdout)
    assert "Hint: *** in clear" in done.stdout
    assert flowhost("runs", "resolve", run_id, "literal", "--action", "retry", cwd=tmp_path,
                    env=env).returncode == 0
    resumed = flowhost("resume", "--no-progress", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"end token={SECRET}" in journal_file.read_text()  # the plugin got it
    for path in (tmp_path / ".flowhost").rglob("*"):  # the database, the step logs...
        assert path.is_dir() or SECRET.encode() not in path.read_bytes(), path
    record = Store.open(tmp_path / ".flowhost").run(run_id)
    assert record.overrides == ["b.text=x${secret.TOKEN}x"]
    assert record.spec_redacted  # the hint held the value in clear: re-read on resume
    result = show(tmp_path, run_id)
    assert result["outputs"]["a"]["label"] == "token=***"
    assert result["outputs"]["b"]["text"] == "x***x" and result["status"] == "success"


def test_the_estimate_comes_from_earlier_runs(tmp_path: Path) -> None:
    chain(tmp_path, count=2, seconds=0.2)
    first = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert "estimated" not in first.stdout
    second = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert re.search(r"started: chain, 2 steps, estimated 4\d\dms", second.stdout), \
        second.stdout


def test_cache_clear_and_no_cache(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "workflow_id: w\nsteps:\n  - {plugin: counter, inputs: {calls: calls.txt}}\n")
    flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    flowhost("run", "wf.yaml", "--no-progress", "--json-out", "r.json", cwd=tmp_path)
    assert json.loads((tmp_path / "r.json").read_text())["steps"][0]["cached"]
    flowhost("run", "wf.yaml", "--no-progress", "--no-cache", cwd=tmp_path)
    cleared = flowhost("cache", "clear", cwd=tmp_path)
    assert cleared.returncode == 0 and "Removed 1 cached result " in cleared.stdout
    flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 3


def test_two_runs_share_a_state_dir(tmp_path: Path) -> None:
    chain(tmp_path, count=15, seconds=0.01)
    procs = [start("run", "wf.yaml", "--no-progress", cwd=tmp_path) for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    ids = {run_id_of(out) for out, _ in outputs}
    listing = json.loads(flowhost("runs", "list", "--json", cwd=tmp_path).stdout)
    assert {(r["run_id"], r["status"], r["steps_completed"]) for r in listing} == {
        (run_id, "success", 15) for run_id in ids}


def test_a_run_whose_workflow_no_longer_checks_is_not_resumed(tmp_path: Path) -> None:
    chain(tmp_path, count=2, seconds=1)
    proc = start("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    wait_for((tmp_path / "journal.txt").exists)
    proc.kill()
    out, _ = proc.communicate()
    run_id = run_id_of(out)
    with sqlite3.connect(tmp_path / ".flowhost" / "state.db") as conn:
        conn.execute("UPDATE runs SET spec_text = replace(spec_text, 'plugin: journal', "
                     "'plugin: uninstalled')")
    done = flowhost("resume", run_id, cwd=tmp_path)
    assert done.returncode == 2
    assert "its workflow no longer checks" in done.stderr and "uninstalled" in done.stderr


def test_a_step_whose_outputs_held_a_secret_runs_again_when_a_later_step_needs_them(
        tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: secret-resume
steps:
  - {{id: e, plugin: echo, inputs: {{text: "pre-${{secret.TOKEN}}"}}}}
  - {{id: plain, plugin: echo, inputs: {{text: "no secret"}}}}
  - {{id: s, plugin: sleeper, inputs: {{seconds: 2}}, needs: [e, plain]}}
  - id: w
    plugin: file-writer
    inputs: {{directory: "{tmp_path}", content: $e.text}}
    needs: [s]
""", encoding="utf-8")
    env = {"TOKEN": "AAAsecret1"}
    proc = subprocess.Popen([sys.executable, "-m", "flowhost", "run", "wf.yaml",
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert proc.stdout is not None
    lines: list[str] = []
    while not any("step 3/4 s (sleeper) started" in line for line in lines):
        line = proc.stdout.readline()
        assert line, proc.communicate()
        lines.append(line)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    resumed = flowhost("resume", "--no-progress", "--json-out", "r.json", cwd=tmp_path,
                       env=env)
    assert resumed.returncode == 0, resumed.stderr
    # The recorded outputs of e say "pre-***": w must get the real value, so e ran again.
    assert (tmp_path / "out.py").read_text(encoding="utf-8") == "pre-AAAsecret1"
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    rerun = {step["id"] for step in result["steps"] if step["rerun_after_interruption"]}
    assert rerun == {"e", "s"}  # plain had no secret: it did not run again
    assert "AAAsecret1" not in (tmp_path / "r.json").read_text(encoding="utf-8")


def test_ctrl_c_during_final_validation_stops_its_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: final-ctrl-c
steps:
  - {{id: a, plugin: echo, inputs: {{text: hi}}}}
final_validation:
  # $$$$: the shell's $$ (a spec writes a literal $ as $$)
  - command: {{run: "echo $$$$ > '{pid_file}'; exec sleep 60", shell: true, timeout: 120}}
""", encoding="utf-8")
    proc = start("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        command = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert "Interrupted" in err
        with pytest.raises(ProcessLookupError):
            os.kill(command, 0)  # the check's command was killed, not left behind
    finally:  # whatever failed above, leave no process behind
        proc.kill()
        proc.communicate()
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
