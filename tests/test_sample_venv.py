"""The sample plugin ``python-venv``: a project's own environment, a transient error naming
pip when the index cannot be reached, and the host's interpreter as the demo's fallback (the
same plugin with other inputs, recorded as a substitution). No test reaches the network: the
index is a closed loopback port, and the environment that is built installs nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SPEC = """
workflow_id: own-env
steps:
  - id: venv
    plugin: python-venv
    inputs: {project_path: proj}
    retry: {max_attempts: 1}
    fallback:
      - plugin: python-venv
        inputs: {project_path: $inputs.project_path, use_host: true}
    manual: false
final_validation:
  - command: {run: "${venv.python} -c 'import sys; print(sys.prefix)'", shell: true}
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(tmp_path: Path,
         requirements: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "requirements.txt").write_text(requirements, encoding="utf-8")
    (tmp_path / "wf.yaml").write_text(SPEC, encoding="utf-8")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1",
           "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple"}
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml", "--no-progress",
                           "--json-out", "r.json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False, stdin=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    return done, result


def test_the_project_gets_its_own_environment(tmp_path: Path) -> None:
    done, result = _run(tmp_path, "# nothing to install\n")
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = result["outputs"]["venv"]
    assert outputs["source"] == "venv"
    assert outputs["python"] == str(tmp_path / "proj" / ".venv" / "bin" / "python")
    assert result["learnings"]["modifications"] == []


def test_without_the_index_the_hosts_interpreter_stands_in_and_says_so(tmp_path: Path) -> None:
    done, result = _run(tmp_path, "surely-not-installed-package-xyz>=1\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TransientError: cannot install requirements.txt: the package index cannot be " \
           "reached" in done.stdout
    assert "falling back to python-venv with the inputs of fallback 1" in done.stdout
    outputs = result["outputs"]["venv"]
    assert (outputs["source"], outputs["python"]) == ("host", sys.executable)
    assert result["learnings"]["modifications"] == [
        "Used python-venv with the inputs of fallback 1 instead of its own (step venv)"]
