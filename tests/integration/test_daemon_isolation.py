"""What other local users, and the specs a daemon runs, can see of flowhost's state and of
the daemon itself (/tmp/flowhost-bugs.md 11, 12, 13): the state dir is private when
flowhost makes it; a check command of a submitted run sees no variable of the daemon's
environment that is not allowed, nor the daemon's tokens in its result."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import StartDaemon, start_daemons, submit, wait_for, watch

from flowhost.daemon.records import run_dir

QUICK = "workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most users have (022: files readable by all), for the processes started."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_state_dir_flowhost_makes_is_private(tmp_path: Path, usual_umask: None) -> None:
    (tmp_path / "quick.yaml").write_text(QUICK, encoding="utf-8")
    (tmp_path / "shared").mkdir(mode=0o755)  # made by the user: left as it is
    for state in ("new/state", "shared"):
        done = subprocess.run([sys.executable, "-m", "flowhost", "run", "quick.yaml",
                               "--no-progress", "--state-dir", state], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert mode(tmp_path / state / "state.db") == 0o600
        assert mode(tmp_path / state / "steplog") == 0o700  # (a log in it: 0600)
    assert mode(tmp_path / "new" / "state") == 0o700
    assert mode(tmp_path / "shared") == 0o755


def test_the_daemons_state_and_run_folders_are_private(tmp_path: Path, usual_umask: None,
                                                       daemon: StartDaemon) -> None:
    served = daemon()
    stub = served.stub()
    run_id = submit(stub, QUICK)
    assert wait_for(stub, run_id)["status"] == "success"
    assert mode(served.state_dir) == 0o700
    assert mode(served.state_dir / "state.db") == 0o600
    assert mode(run_dir(served.state_dir, run_id)) == 0o700


PEEK = """workflow_id: peek
steps:
  - id: a
    plugin: echo
    inputs: {text: hi}
    validation:
      - command:
          run: [sh, -c, 'env; echo ---; tr "\\\\0" "\\\\n" < /proc/$PPID/environ']
          timeout: 60
"""


def test_a_check_command_sees_no_variable_of_the_daemon_that_is_not_allowed(
        tmp_path: Path, daemon: StartDaemon) -> None:
    """As verified by the security review: the worker had the daemon's whole environment,
    and a command reads it in ``/proc/$PPID/environ`` (bug 11)."""
    (tmp_path / "flowhost.toml").write_text('[serve]\nenv_allow = ["SEC_SHOWN"]\n')
    served = daemon(env={"SEC_HIDDEN": "hidden-value-456", "SEC_SHOWN": "shown-value-123"})
    stub = served.stub()
    found = wait_for(stub, submit(stub, PEEK))
    seen = found["steps"][0]["validation"][0]["details"]["output_tail"]
    own, _, worker = seen.partition("---")
    assert "SEC_SHOWN=shown-value-123" in own and "SEC_SHOWN=shown-value-123" in worker
    assert "PATH=" in worker  # it is the worker's environment that was read
    assert "hidden-value-456" not in seen and "SEC_HIDDEN" not in seen


def test_the_daemons_tokens_are_masked_in_what_a_run_stores_and_returns(
        tmp_path: Path, daemon: StartDaemon) -> None:
    """A check command can read the daemon's token file (its user's); what it prints of
    it must not give every token to whoever may submit (bug 12)."""
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-of-alice-81f2\nbob:token-of-bob-55e0\n")
    served = daemon("--token-file", str(tokens))
    stub = served.stub(token="token-of-alice-81f2")
    spec = ("workflow_id: cat\nsteps:\n  - id: a\n    plugin: echo\n    inputs: {text: hi}\n"
            f"    validation:\n      - command: {{run: [cat, '{tokens}'], timeout: 60}}\n")
    run_id = submit(stub, spec)
    found = wait_for(stub, run_id)
    shown = found["steps"][0]["validation"][0]["details"]["output_tail"]
    assert shown == "alice:***\nbob:***"
    everything = [str(found), *(str(event) for event in watch(stub, run_id))]
    everything += [path.read_bytes().decode("utf-8", "replace")
                   for path in served.state_dir.glob("state.db*")]  # -wal too
    for text in everything:
        assert "token-of-alice-81f2" not in text and "token-of-bob-55e0" not in text
