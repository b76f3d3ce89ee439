"""Running ``flowhost`` with a terminal (a pseudo-terminal) as its output, and its input when
the test types something: what a person at a terminal sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def on_a_terminal(cwd: Path, *args: str, typed: bytes | None = None,
                  term: str = "xterm") -> tuple[int, str]:
    """``python -m flowhost ARGS`` with stdout and stderr on a terminal (and stdin too when
    ``typed`` is given: those keystrokes, up front); its exit code and everything shown."""
    leader, follower = os.openpty()
    env = {**os.environ, "TERM": term, "COLUMNS": "120", "LINES": "40"}
    stdin = follower if typed is not None else subprocess.DEVNULL
    with subprocess.Popen([sys.executable, "-m", "flowhost", *args], cwd=cwd, env=env,
                          stdin=stdin, stdout=follower, stderr=follower) as process:
        os.close(follower)
        if typed:
            os.write(leader, typed)
        shown = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: the process is gone
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(timeout=60)
    os.close(leader)
    return code, shown.decode("utf-8", errors="replace")
