"""A run's estimate uses the durations of the same plugin with the same inputs, or — when
the plugin's durations disagree, so its inputs decide — says nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def _started_line(tmp_path: Path, seconds: float) -> str:
    (tmp_path / "wf.yaml").write_text(
        f"workflow_id: w\nsteps:\n  - {{id: s, plugin: sleeper, inputs: {{seconds: {seconds}}},"
        " cache: false}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml", "--no-progress"],
                          cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line for line in done.stdout.splitlines() if " started: w, 1 step" in line)


def test_the_estimate_follows_the_inputs(tmp_path: Path) -> None:
    assert "estimated" not in _started_line(tmp_path, 0.05)  # nothing known yet
    _started_line(tmp_path, 0.6)  # now its durations disagree: 0.05 s and 0.6 s
    line = _started_line(tmp_path, 0.6)
    found = re.search(r"estimated (\d+)ms", line)
    assert found is not None, line
    assert 550 <= int(found.group(1)) < 1000  # what it took with these inputs
    assert "estimated" not in _started_line(tmp_path, 0.3)  # inputs it never ran with
