"""``runs show`` after ``runs resolve`` (a parked run, no process running it) shows the
decision as recorded and pending until ``resume`` applies it, never the step as running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from terminal import on_a_terminal

from flowhost.progress import human_duration

SPEC = """
workflow_id: parked
steps:
  - {id: a, plugin: noop, inputs: {value: 1}}
  - {id: asks, plugin: fail, inputs: {message: needs a human}}
"""


def _flowhost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowhost", *args, "--state-dir", "st"],
                          cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)


def _step(tmp_path: Path, run_id: str, step_id: str) -> dict[str, Any]:
    shown = _flowhost(tmp_path, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    steps: list[dict[str, Any]] = json.loads(shown.stdout)["steps"]
    return next(step for step in steps if step["id"] == step_id)


def test_a_decision_on_a_parked_run_is_pending_until_resume_applies_it(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    resolved = _flowhost(tmp_path, "runs", "resolve", run_id, "asks", "--action", "skip",
                         "--outputs", '{"never": "x"}')
    assert resolved.returncode == 0, resolved.stderr

    step = _step(tmp_path, run_id, "asks")
    assert step["status"] == "waiting"
    assert step["interventions"][-1] | {"outputs": None} == {
        "error": "needs a human", "hint": None, "action": "skip", "by": "user",
        "outputs": None, "pending": True}
    text = _flowhost(tmp_path, "runs", "show", run_id).stdout
    assert "running" not in text
    assert "decision skip (by user) recorded, pending: the next resume applies it" in text
    assert f"Decided, not applied yet: asks. Continue with: flowhost resume {run_id}" in text

    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    step = _step(tmp_path, run_id, "asks")
    assert step["status"] == "skipped"
    assert step["interventions"][-1]["pending"] is False
    assert "pending" not in _flowhost(tmp_path, "runs", "show", run_id).stdout


SKIP_SPEC = """
workflow_id: stand-in
steps:
  - {id: asks, plugin: bad-output}
  - {id: after, plugin: echo, inputs: {text: "$asks.project_path"}}
"""


def test_resolve_reports_every_missing_output_with_its_type(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SKIP_SPEC, encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    for given, said in [
        ("{}", "missing project_path (string), count (integer)"),
        ('{"count": "many"}', "missing project_path (string); count: 'many' is not of type "
                              "'integer'"),
    ]:
        refused = _flowhost(tmp_path, "runs", "resolve", run_id, "asks", "--action", "skip",
                            "--outputs", given)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"flowhost: --outputs do not fit the outputs of bad-output (step 'asks'): {said}")


def test_the_prompt_lists_the_output_fields_and_every_missing_one(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SKIP_SPEC, encoding="utf-8")
    code, text = on_a_terminal(
        tmp_path, "run", "wf.yaml", "--json-out", "r.json", term="dumb",  # plain lines
        typed=b's\n{}\n{"project_path": "/srv/app", "count": 2}\n')
    assert code == 0, text
    assert ("bad-output's outputs: project_path (string, required), count (integer, "
            "required)") in text
    assert ("do not fit bad-output's output schema: missing project_path (string), "
            "count (integer)") in text
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["outputs"]["asks"] == {"project_path": "/srv/app", "count": 2}
    assert result["outputs"]["after"]["text"] == "/srv/app"


def test_after_a_resume_the_screen_and_the_result_tell_the_same_time(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    _flowhost(tmp_path, "runs", "resolve", run_id, "asks", "--action", "skip")
    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress", "--json-out", "r.json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    whole = human_duration(result["execution_time_s"])
    last = resumed.stdout.strip().splitlines()[-1]
    assert f" in this process, {whole} over the whole run (execution_time_s), " in last


def test_a_persons_retry_in_a_later_process_numbers_its_attempts_on(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "workflow_id: w\nsteps:\n  - {id: s, plugin: flaky, inputs: {counter_file: c.txt, "
        "fail_times: 1, kind: permanent}}\n", encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    assert parked.returncode == 3
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    _flowhost(tmp_path, "runs", "resolve", run_id, "s", "--action", "retry")
    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress", "--json-out", "r.json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "step 1/1 s (flaky) attempt 2 started" in resumed.stdout
    step = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["steps"][0]
    assert (step["status"], step["attempts"]) == ("success", 2)
    assert [a["attempt"] for a in step["failed_attempts"]] == [1]


def test_a_skip_applied_by_resume_is_named_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    parked = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--on-manual", "wait")
    run_id = parked.stdout.splitlines()[0].removeprefix("run_id: ")
    _flowhost(tmp_path, "runs", "resolve", run_id, "asks", "--action", "skip")
    resumed = _flowhost(tmp_path, "resume", run_id, "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    last = resumed.stdout.strip().splitlines()[-1]
    assert "— not every step succeeded: asks (fail) skipped: skipped by user after: needs a " \
           "human" in last
