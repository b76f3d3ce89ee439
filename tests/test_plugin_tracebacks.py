"""A plugin author sees their bug: an unexpected exception keeps its traceback (from the
plugin's frames on, secrets masked) — one line in the default view, the whole of it with
``flowhost run -v``, in the result and in ``runs show``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

SECRET = "hunter2-very-secret"
SPEC = """
workflow_id: buggy
steps:
  - {id: boom, plugin: buggy, inputs: {token: "${secret.API_TOKEN}"}}
"""
WHERE = "failing.py:{line} in _parse_settings"


def _flowhost(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "API_TOKEN": SECRET}
    return subprocess.run([sys.executable, "-m", "flowhost", *args, "--state-dir", "st"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)


def _raise_line() -> int:
    from flowhost_test_plugins import failing

    source = Path(failing.__file__).read_text(encoding="utf-8").splitlines()
    return source.index('    raise ValueError(f"no settings for token {token}")') + 1


def test_the_default_view_says_where_it_was_raised_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    done = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress")
    assert done.returncode == 1
    failed = [line for line in done.stdout.splitlines() if "attempt 1 failed" in line]
    assert failed and failed[0].endswith(
        f"ValueError: no settings for token *** (raised at {WHERE.format(line=_raise_line())})")
    assert "Traceback" not in done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_verbose_shows_the_plugins_traceback(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    done = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "-v", "--json-out", "r.json")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    start = lines.index("    Traceback (most recent call last):")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("    "))
    shown = "\n".join(lines[start:end])
    assert "failing.py\", line" in shown and ", in invoke\n" in shown
    assert f"line {_raise_line()}, in _parse_settings" in shown
    assert shown.endswith("    ValueError: no settings for token ***")
    assert "flowhost/ladder.py" not in shown and "flowhost_sdk" not in shown  # not theirs
    assert SECRET not in done.stdout + done.stderr

    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    step = result["steps"][0]
    assert step["traceback"] == step["failed_attempts"][0]["traceback"]
    assert step["traceback"].startswith("Traceback (most recent call last):\n")
    assert f"line {_raise_line()}, in _parse_settings" in step["traceback"]

    run_id = lines[0].removeprefix("run_id: ")
    shown_later = _flowhost(tmp_path, "runs", "show", run_id).stdout
    assert f"line {_raise_line()}, in _parse_settings" in shown_later
    with sqlite3.connect(tmp_path / "st" / "state.db") as db:
        dumped = "\n".join(db.iterdump())
    assert "_parse_settings" in dumped and SECRET not in dumped


def test_a_sync_plugins_traceback_starts_at_its_own_frame(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("workflow_id: w\nsteps:\n  - {id: c, plugin: crash}\n",
                                      encoding="utf-8")
    done = _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--json-out", "r.json")
    assert done.returncode == 1
    trace = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["steps"][0][
        "traceback"]
    frames = [line for line in trace.splitlines() if line.lstrip().startswith("File ")]
    assert len(frames) == 1 and "failing.py" in frames[0] and frames[0].endswith("in invoke")


def test_an_error_the_plugin_meant_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("workflow_id: w\nsteps:\n  - {id: f, plugin: fail}\n",
                                      encoding="utf-8")
    _flowhost(tmp_path, "run", "wf.yaml", "--no-progress", "--json-out", "r.json")
    step = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["steps"][0]
    assert step["error_type"] == "PermanentError" and step["traceback"] is None
