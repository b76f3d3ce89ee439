"""kill -9 at random moments, resume, again and again: no finished step ever runs twice, every
step finishes exactly once, and the result is the one of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowhost.store import Store, read

BRANCHES, DEPTH = 4, 4  # a root, 4 chains of 4, a join, and 2 more: 20 steps


def workflow(directory: Path) -> Path:
    journal = directory / "journal.txt"
    rnd = random.Random(7)

    def step(step_id: str, value: str, needs: list[str] | None = None) -> str:
        seconds = rnd.choice([0.2, 0.3, 0.4])
        extra = f", needs: [{', '.join(needs)}]" if needs else ""
        return (f"  - {{id: {step_id}, plugin: journal, inputs: {{journal: '{journal}', "
                f"label: {step_id}, seconds: {seconds}, value: {value}}}{extra}}}")

    lines = ["workflow_id: chaos", "steps:", step("root", "0")]
    for branch in range(BRANCHES):
        previous = "root"
        for depth in range(DEPTH):
            step_id = f"b{branch}_{depth}"
            lines.append(step(step_id, f"${previous}.value"))
            previous = step_id
    ends = [f"b{b}_{DEPTH - 1}" for b in range(BRANCHES)]
    lines += [step("join", f"${ends[0]}.value", ends[1:]), step("t1", "$join.value"),
              step("t2", "$t1.value")]
    spec = directory / "wf.yaml"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return spec


def start(directory: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The process, and the file that gets its output (a pipe could fill up unread)."""
    path = directory / f"out-{time.monotonic_ns()}.txt"
    with path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flowhost", *args, "--no-progress",
                                 "--max-parallel", "3", "--json-out", "result.json"],
                                cwd=directory, stdout=out, stderr=subprocess.STDOUT)
    return proc, path


def journal(directory: Path, what: str) -> list[tuple[str, int]]:
    """``(label, pid)`` of each call of the journal plugin that began / ended."""
    path = directory / "journal.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(label, int(pid)) for kind, label, pid in (line.split() for line in lines)
            if kind == what]


def finished_steps(directory: Path, run_id: str) -> set[str]:
    store = Store.open(directory / ".flowhost")
    try:
        return set(read(store.events(store.run(run_id))).finished)
    finally:
        store.close()


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what differs between any two runs: ids and timings."""
    data = {k: v for k, v in result.items()
            if k not in {"run_id", "execution_time_s", "started_at", "finished_at"}}
    data["steps"] = [{k: v for k, v in s.items()
                      if k not in {"duration_s", "rerun_after_interruption"}}
                     for s in result["steps"]]
    return data


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_at_random_moments_then_resume(tmp_path: Path, seed: int) -> None:
    reference_dir, chaos_dir = tmp_path / "reference", tmp_path / "chaos"
    reference_dir.mkdir()
    chaos_dir.mkdir()
    workflow(reference_dir)
    workflow(chaos_dir)
    reference, _ = start(reference_dir, "run", "wf.yaml")
    rnd = random.Random(seed)
    run_id: str | None = None
    processes: list[tuple[int, set[str]]] = []  # pid, steps finished before it started
    kills = 0
    while True:
        done_before = finished_steps(chaos_dir, run_id) if run_id else set()
        proc, out = start(chaos_dir, *(["resume", run_id] if run_id else ["run", "wf.yaml"]))
        processes.append((proc.pid, done_before))
        if kills < 7:
            try:
                proc.wait(timeout=rnd.uniform(0.3, 1.2))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
        else:
            proc.wait(timeout=60)
        output = out.read_text()
        if run_id is None and output.startswith("run_id: "):
            run_id = output.splitlines()[0].removeprefix("run_id: ")
        if proc.returncode == 0:
            break
        if proc.returncode == 2 and "already finished (success)" in output:
            break  # the previous process was killed after its run's end was saved
        assert proc.returncode == -signal.SIGKILL, output
    assert reference.wait(timeout=60) == 0
    assert kills >= 3 and run_id is not None

    shown = subprocess.run([sys.executable, "-m", "flowhost", "runs", "show", run_id, "--json"],
                           cwd=chaos_dir, capture_output=True, text=True, check=True)
    result = json.loads(shown.stdout)  # the store's word, and the last process's, agree
    if proc.returncode == 0:
        assert json.loads((chaos_dir / "result.json").read_text()) == result
    expected = json.loads((reference_dir / "result.json").read_text())
    assert result["status"] == "success" and result["run_id"] == run_id
    assert [s["status"] for s in result["steps"]] == ["success"] * 20
    assert comparable(result) == comparable(expected)

    began, ended = journal(chaos_dir, "begin"), journal(chaos_dir, "end")
    assert {label for label, _ in ended} == {s["id"] for s in result["steps"]}
    for pid, done_before in processes:
        again = {label for label, who in began if who == pid} & done_before
        assert not again, f"finished steps ran again in process {pid}: {again}"
    # At-least-once: a step began more than once only if it was in flight at a kill, and
    # the result says so.
    rerun = {s["id"] for s in result["steps"] if s["rerun_after_interruption"]}
    calls: dict[str, int] = {}
    for label, _ in began:
        calls[label] = calls.get(label, 0) + 1
    twice = {label for label, count in calls.items() if count > 1}
    assert twice and twice <= rerun
