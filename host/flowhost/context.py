"""What one run may use of the world: its own working directory, environment, host config and
state dir. Several runs go on in one process (the daemon, a program embedding flowhost), so
nothing below the public API reads ``os.environ`` or the current directory, and nothing calls
``os.chdir``: every relative path of a run resolves against ``RunContext.workdir``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flowhost.config import HostConfig, load_config
from flowhost.problems import UserInputError

DEFAULT_STATE_DIR = ".flowhost"
DEFAULT_BUSY_TIMEOUT = 10.0
STATE_DIR_ENV = "FLOWHOST_STATE_DIR"
LOCK_TIMEOUT_ENV = "FLOWHOST_LOCK_TIMEOUT"


@dataclass(frozen=True, slots=True)
class RunContext:
    workdir: Path  # absolute
    env: Mapping[str, str]  # what ${env.X} and ${secret.X} read, and what check commands get
    state_dir: Path  # absolute
    config: HostConfig
    busy_timeout: float  # seconds to wait for another process's write to the state dir
    owner: str  # who executes the runs of this context: host:pid, in leases

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """``relative`` as the run means it: in its working directory."""
        return Path(self.workdir, relative)


def make_context(*, workdir: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None,
                 state_dir: str | os.PathLike[str] | None = None,
                 config: HostConfig | None = None) -> RunContext:
    """A run's context; what is not given comes from the calling process: its current
    directory, its environment (``$FLOWHOST_STATE_DIR``, ``$FLOWHOST_LOCK_TIMEOUT``,
    ``$FLOWHOST_CONFIG``) and the ``flowhost.toml`` of the working directory."""
    base = Path(os.getcwd() if workdir is None else workdir).absolute()
    environ = dict(os.environ if env is None else env)
    state = Path(base, state_dir or environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    if config is None:
        config = load_config(environ=environ, cwd=base)
    return RunContext(workdir=base, env=environ, state_dir=state, config=config,
                      busy_timeout=busy_timeout_from(environ),
                      owner=f"{socket.gethostname()}:{os.getpid()}")


def busy_timeout_from(env: Mapping[str, str]) -> float:
    """How long to wait for another process's write (``$FLOWHOST_LOCK_TIMEOUT`` seconds)."""
    text = env.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_BUSY_TIMEOUT
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:  # NaN too
        raise UserInputError(f"{LOCK_TIMEOUT_ENV}={text!r} is not a number of seconds")
    return value
