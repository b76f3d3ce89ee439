"""``--on-manual`` without a terminal means what CONTRACT §6 says: ``fail`` (the default) fails
the step and its ``on_failure`` decides; ``abort`` stops the run as a person's abort does;
``skip`` skips the step; ``wait`` parks the run (exit 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = """
workflow_id: asks
steps:
  - {id: f, plugin: fail, on_failure: continue}
  - {id: other, plugin: echo, inputs: {text: x}}
"""


@pytest.mark.parametrize(("flags", "code", "status", "f_status"), [
    ([], 0, "success", "failed"),
    (["--on-manual", "fail"], 0, "success", "failed"),
    (["--on-manual", "abort"], 1, "aborted", "failed"),
    (["--on-manual", "skip"], 0, "success", "skipped"),
    (["--on-manual", "wait"], 3, "waiting", "waiting"),
])
def test_on_manual_policies(tmp_path: Path, flags: list[str], code: int, status: str,
                            f_status: str) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml", "--no-progress",
                           "--json-out", "r.json", *flags], cwd=tmp_path, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == code, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["status"] == status
    steps = {s["id"]: s["status"] for s in result["steps"]}
    assert steps["f"] == f_status


def test_the_plain_log_names_the_policy_that_decided(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml", "--no-progress"],
                          cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert ("decision fail, decided by --on-manual fail; use --on-manual wait to answer "
            "later") in done.stdout
