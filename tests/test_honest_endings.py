"""A run that succeeds with steps a person skipped or that failed under ``on_failure:
continue`` says so at its end, in both views, instead of the clean "Workflow complete!"; the
status stays ``success`` (CONTRACT §7). The step's ``manual.hint`` shows beside the error's
own hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from terminal import on_a_terminal

SPEC = """
workflow_id: honest
steps:
  - {id: a, plugin: noop, inputs: {value: 1}}
  - id: flaky_disk
    plugin: fail
    inputs: {message: disk on fire}
    on_failure: continue
  - id: asks
    plugin: fail
    inputs: {message: needs a human, hint: check the cable}
    manual: {hint: restart the frobnicator}
    on_failure: continue
  - {id: d, plugin: noop, inputs: {value: 2}}
"""

CLEAN = """
workflow_id: clean
steps:
  - {id: a, plugin: noop, inputs: {value: 1}}
"""


def _run(tmp_path: Path, spec: str, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml", "--json-out",
                           "r.json", *flags], cwd=tmp_path, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def _screen(tmp_path: Path, spec: str, *flags: str) -> str:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    return on_a_terminal(tmp_path, "run", "wf.yaml", *flags)[1]


def test_the_plain_log_says_which_steps_did_not_succeed_and_why(tmp_path: Path) -> None:
    done = _run(tmp_path, SPEC, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert "] run finished: success in " in last
    assert "2/4 steps succeeded, 2 failed — not every step succeeded: " in last
    assert "flaky_disk (fail) failed: disk on fire" in last
    assert "asks (fail) failed: needs a human" in last
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["status"] == "success"  # as documented: like continue-on-error
    assert result["steps_failed"] == 2


def test_a_clean_run_ends_as_before(tmp_path: Path) -> None:
    done = _run(tmp_path, CLEAN, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not every step succeeded" not in done.stdout
    assert "✅ Workflow complete!" in _screen(tmp_path, CLEAN)


def test_the_live_view_does_not_claim_a_clean_completion(tmp_path: Path) -> None:
    screen = _screen(tmp_path, SPEC, "--on-manual", "skip")
    assert "✅ Workflow complete!" not in screen
    assert "Workflow complete, but not every step succeeded (2 skipped)" in screen
    assert "flaky_disk (fail) skipped: " in screen
    assert "asks (fail) skipped: " in screen


def test_the_steps_manual_hint_shows_beside_the_errors_own(tmp_path: Path) -> None:
    done = _run(tmp_path, SPEC, "--no-progress")
    assert "(hint: check the cable; restart the frobnicator)" in done.stdout
    assert "— hint: check the cable; restart the frobnicator" in done.stdout
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    asks = next(step for step in result["steps"] if step["id"] == "asks")
    assert asks["hint"] == "check the cable; restart the frobnicator"
    assert asks["interventions"][0]["hint"] == "check the cable; restart the frobnicator"


FALLBACKS = """
workflow_id: substitutes
steps:
  - id: same
    plugin: flaky
    inputs: {counter_file: same.count, fail_times: 1, kind: permanent}
    fallback:
      - {plugin: flaky, inputs: {counter_file: other.count, fail_times: 0}}
  - id: other
    plugin: flaky
    inputs: {counter_file: third.count, fail_times: 1, kind: permanent}
    fallback:
      - {plugin: alternative}
"""


def test_a_fallback_to_the_same_plugin_is_recorded_like_any_substitution(
        tmp_path: Path) -> None:
    done = _run(tmp_path, FALLBACKS, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["learnings"]["modifications"] == [
        "Used flaky with the inputs of fallback 1 instead of its own (step same)",
        "Used alternative instead of flaky",
    ]
    steps = {step["id"]: step for step in result["steps"]}
    assert (steps["same"]["used_plugin"], steps["same"]["used_fallback"]) == ("flaky", 1)
    assert (steps["other"]["used_plugin"], steps["other"]["used_fallback"]) == (
        "alternative", 1)
