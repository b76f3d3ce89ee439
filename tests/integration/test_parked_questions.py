"""A question to a person is durable: a run killed while its prompt was open asks the same
question again on resume, without calling the plugin again to get there."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

SPEC = """
workflow_id: parked
steps:
  - id: f
    plugin: flaky
    inputs: {{counter_file: "{counter}", fail_times: 99, kind: permanent}}
  - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
"""


def _kill_at_the_prompt(tmp_path: Path) -> None:
    """``flowhost run`` on a terminal, SIGKILLed as soon as it asks."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "flowhost", "run", "wf.yaml"])
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"Choose [r]etry" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
        assert b"Choose [r]etry" in seen, seen.decode(errors="replace")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_a_question_open_when_the_run_was_killed_is_asked_again_on_resume(
        tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    (tmp_path / "wf.yaml").write_text(SPEC.format(counter=counter), encoding="utf-8")
    _kill_at_the_prompt(tmp_path)
    assert counter.read_text() == "1"

    def flowhost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)

    waiting = flowhost("resume", "--no-progress")
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    assert "waiting for a decision on step 'f'" in waiting.stdout
    listed = json.loads(flowhost("runs", "list", "--json").stdout)
    assert listed[0]["status"] == "waiting"
    run_id = listed[0]["run_id"]
    answered = flowhost("runs", "resolve", run_id, "f", "--action", "skip", "--outputs",
                        '{"calls": 0, "value": "given"}')
    assert answered.returncode == 0, answered.stderr
    done = flowhost("resume", run_id, "--no-progress", "--json-out", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["outputs"]["after"]["text"] == "given"
    assert counter.read_text() == "1"  # the plugin was not called again to ask again
