"""Fix and resume: ``resume`` says when the spec file changed since the run started;
``resume --reload-spec`` goes on with the edited spec (checked first) — finished steps whose
definition did not change keep their results, changed ones and what depends on them run
again, and a run that failed runs what did not succeed. Shown in the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BROKEN = """
workflow_id: fixme
steps:
  - {id: a, plugin: counter, inputs: {calls: a.count}, cache: false}
  - {id: b, plugin: fail, inputs: {message: typo in the spec}, needs: [a]}
  - {id: c, plugin: echo, inputs: {text: "$b.never"}}
  - {id: d, plugin: counter, inputs: {calls: d.count}, cache: false, needs: [b]}
"""
FIXED = BROKEN.replace("{id: b, plugin: fail, inputs: {message: typo in the spec}",
                       "{id: b, plugin: echo, inputs: {text: fixed}").replace(
                           "$b.never", "$b.text")


PARKS = """
workflow_id: w
steps:
  - {id: a, plugin: counter, inputs: {calls: a.count}, cache: false}
  - {id: asks, plugin: fail, inputs: {message: needs a human}}
"""


def _calls(tmp_path: Path, step: str) -> int:
    return len((tmp_path / f"{step}.count").read_text(encoding="utf-8").splitlines())


def _flowhost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowhost", *args, "--state-dir", "st"],
                          cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)


def _result(tmp_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    return result


def _failed_run(tmp_path: Path) -> str:
    (tmp_path / "wf.yaml").write_text(BROKEN, encoding="utf-8")
    first = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress")
    assert first.returncode == 1, first.stdout + first.stderr
    return first.stdout.splitlines()[0].removeprefix("run_id: ")


def test_a_failed_run_goes_on_with_its_fixed_spec(tmp_path: Path) -> None:
    run_id = _failed_run(tmp_path)
    (tmp_path / "wf.yaml").write_text(FIXED, encoding="utf-8")
    refused = _flowhost(tmp_path, "resume", run_id, "--no-progress")
    assert refused.returncode == 2
    assert f"flowhost resume {run_id} --reload-spec` runs what did not succeed" in \
        refused.stderr

    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress", "--reload-spec",
                        "--json-out", "r.json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (f"Reloaded {tmp_path / 'wf.yaml'}: changed: b, c; run again: b, c, d; every "
            "other finished step keeps its result.") in resumed.stderr
    result = _result(tmp_path)
    assert result["status"] == "success"
    steps = {step["id"]: step for step in result["steps"]}
    assert {sid: (s["status"], s["rerun_after_spec_change"]) for sid, s in steps.items()} == {
        "a": ("success", False), "b": ("success", True), "c": ("success", True),
        "d": ("success", True)}
    assert result["outputs"]["c"]["text"] == "fixed"
    assert _calls(tmp_path, "a") == 1  # it kept its result: not run again
    assert f"Spec reloaded from {tmp_path / 'wf.yaml'} (changed: b, c; run again: b, c, " \
           "d)" in result["learnings"]["modifications"]
    # the edited spec is the run's now: a later look at it agrees
    shown = json.loads(_flowhost(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "success" and shown["steps"] == result["steps"]


def test_resume_says_the_spec_changed_and_keeps_the_one_it_started_with(
        tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(PARKS, encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    assert parked.returncode == 3
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    (tmp_path / "wf.yaml").write_text(PARKS.replace(
        "{id: asks, plugin: fail, inputs: {message: needs a human}}",
        "{id: asks, plugin: echo, inputs: {text: fine now}}"), encoding="utf-8")
    waiting = _flowhost(tmp_path, "resume", run_id, "--no-progress")
    assert waiting.returncode == 3  # still the old spec: still the old question
    assert (f"note: {tmp_path / 'wf.yaml'} changed since run {run_id} started; it goes on "
            "with the spec it started with") in waiting.stderr
    assert f"flowhost resume {run_id} --reload-spec" in waiting.stderr

    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress", "--reload-spec",
                        "--json-out", "r.json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = _result(tmp_path)
    steps = {step["id"]: step for step in result["steps"]}
    assert steps["asks"]["status"] == "success" and steps["a"]["status"] == "success"
    assert _calls(tmp_path, "a") == 1


def test_an_edited_spec_that_does_not_check_changes_nothing(tmp_path: Path) -> None:
    run_id = _failed_run(tmp_path)
    (tmp_path / "wf.yaml").write_text(BROKEN.replace("plugin: echo", "plugin: ehco"),
                                      encoding="utf-8")
    refused = _flowhost(tmp_path, "resume", run_id, "--no-progress", "--reload-spec")
    assert refused.returncode == 2
    assert f"--reload-spec: the edited {tmp_path / 'wf.yaml'} does not check; the run is " \
           "unchanged" in refused.stderr
    assert "'ehco'" in refused.stderr
    shown = json.loads(_flowhost(tmp_path, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "failed"
    assert not any("Spec reloaded" in m for m in shown["learnings"]["modifications"])
