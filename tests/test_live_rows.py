"""The live view as a terminal shows it, frame after frame (a terminal emulator reads what
``flowhost run`` writes to a pseudo-terminal): a finished step never keeps a running row
under its finished line, through parallel steps, retries with a backoff and a fallback."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest

PARALLEL = """
workflow_id: par
steps:
  - {id: a, plugin: sleeper, inputs: {seconds: 0.3}, cache: false}
  - {id: b, plugin: sleeper, inputs: {seconds: 0.8}, cache: false}
  - {id: c, plugin: sleeper, inputs: {seconds: 1.2}, cache: false}
  - {id: d, plugin: sleeper, inputs: {seconds: 0.4}, needs: [a], cache: false}
"""
LADDER = """
workflow_id: lad
steps:
  - id: shaky
    plugin: flaky
    inputs: {counter_file: shaky.count, fail_times: 2, kind: transient}
    retry: {max_attempts: 2, initial_delay: 0.5}
    fallback:
      - {plugin: sleeper, inputs: {seconds: 0.8}}
  - {id: other, plugin: sleeper, inputs: {seconds: 2.5}, cache: false}
"""
COLUMNS, LINES = 110, 30


SETTLED_S = 0.05  # a screen shown this long is what a person sees (not one half-redrawn)


def _frames(tmp_path: Path, spec: str) -> list[list[str]]:
    """The screens that stayed up (the process wrote nothing more for a while after them),
    until it exits: a redraw that arrives in two pieces is not a frame of its own."""
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    shown: list[tuple[float, list[str]]] = []
    with subprocess.Popen([sys.executable, "-m", "flowhost", "run", "wf.yaml"], cwd=tmp_path,
                          env=env, stdin=subprocess.DEVNULL, stdout=follower,
                          stderr=follower) as process:
        os.close(follower)
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process is gone and so is the terminal's other end
                break
            if not chunk:
                break
            # (without emoji variation selectors, which the emulator cannot place: the text
            # after one would be lost)
            stream.feed(chunk.replace("\ufe0f".encode(), b""))
            shown.append((time.monotonic(), [line.rstrip() for line in screen.display]))
        assert process.wait(timeout=60) == 0
    os.close(leader)
    ends = [at for at, _ in shown[1:]] + [float("inf")]
    return [frame for (at, frame), end in zip(shown, ends, strict=True)
            if end - at >= SETTLED_S]


def _stale(frame: list[str]) -> list[str]:
    """Rows of running steps whose finished line is on the screen already."""
    done = {m.group(1) for line in frame if (m := re.search(r"✓ Step (\d+/\d+)", line))}
    return [line for line in frame
            if (m := re.search(r"⚙.*Step (\d+/\d+):", line)) and m.group(1) in done]


@pytest.mark.parametrize("spec", [PARALLEL, LADDER], ids=["parallel", "ladder"])
def test_no_running_row_outlives_its_step(tmp_path: Path, spec: str) -> None:
    frames = _frames(tmp_path, spec)
    assert any("⚙" in line for frame in frames for line in frame)  # the rows were drawn
    stale = [(index, row) for index, frame in enumerate(frames) for row in _stale(frame)]
    assert stale == []
    last = "\n".join(frames[-1])
    assert "✅ Workflow complete!" in last and "⚙" not in last
