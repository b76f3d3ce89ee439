"""What one run may use of the world: its own working directory, environment, host config and
state store (a state dir, or a PostgreSQL URL). Several runs go on in one process (the daemon,
a program embedding flowhost), so nothing below the public API reads ``os.environ`` or the
current directory, and nothing calls ``os.chdir``: every relative path of a run resolves
against ``RunContext.workdir``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flowhost.config import HostConfig, load_config
from flowhost.problems import UserInputError

DEFAULT_STATE_DIR = ".flowhost"
DEFAULT_BUSY_TIMEOUT = 10.0
STATE_DIR_ENV = "FLOWHOST_STATE_DIR"
STORE_ENV = "FLOWHOST_STORE"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
LOCK_TIMEOUT_ENV = "FLOWHOST_LOCK_TIMEOUT"


@dataclass(frozen=True, slots=True)
class RunContext:
    workdir: Path  # absolute
    env: Mapping[str, str]  # what ${env.X} and ${secret.X} read, and what check commands get
    state_dir: Path  # absolute
    config: HostConfig
    busy_timeout: float  # seconds to wait for another process's write to the state dir
    owner: str  # who executes the runs of this context: host:pid, in leases
    # the PostgreSQL store (a checked postgresql:// URL), or None: SQLite in ``state_dir``
    store_url: str | None = None

    @property
    def location(self) -> str:
        """The store as ``make_context(state_dir=…)`` takes it again: the URL, or the dir."""
        return self.store_url or str(self.state_dir)

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """``relative`` as the run means it: in its working directory."""
        return Path(self.workdir, relative)


def make_context(*, workdir: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None,
                 state_dir: str | os.PathLike[str] | None = None,
                 config: HostConfig | None = None) -> RunContext:
    """A run's context; what is not given comes from the calling process: its current
    directory, its environment (``$FLOWHOST_STORE``, ``$FLOWHOST_STATE_DIR``,
    ``$FLOWHOST_LOCK_TIMEOUT``, ``$FLOWHOST_CONFIG``) and the ``flowhost.toml`` of the
    working directory. ``state_dir`` is a directory or a store URL (``store_location``)."""
    base = Path(os.getcwd() if workdir is None else workdir).absolute()
    environ = dict(os.environ if env is None else env)
    given = (os.fspath(state_dir) if state_dir else None) or environ.get(STORE_ENV) \
        or environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    directory, store_url = store_location(given)
    state = Path(base, directory or DEFAULT_STATE_DIR)
    if config is None:
        config = load_config(environ=environ, cwd=base)
    return RunContext(workdir=base, env=environ, state_dir=state, config=config,
                      busy_timeout=busy_timeout_from(environ),
                      owner=f"{socket.gethostname()}:{os.getpid()}", store_url=store_url)


def store_location(given: str) -> tuple[str | None, str | None]:
    """(a state dir, a PostgreSQL URL), one of them, from ``--store``/``--state-dir`` text:
    ``sqlite:///PATH`` and a plain path are a state dir, ``postgresql://…`` (checked now,
    so a bad one is exit 2 before anything runs) a PostgreSQL store."""
    if given.startswith("sqlite:///"):
        return given[len("sqlite://"):], None
    if given.startswith(("postgresql://", "postgres://")):
        from flowhost.store.postgres.url import parse

        return None, parse(given).url
    if _SCHEME.match(given):
        from flowhost.store.postgres.url import hide_password

        raise UserInputError(f"--store {hide_password(given)}: unknown kind of store; give "
                             "sqlite:///PATH/TO/DIR or postgresql://USER@HOST[:PORT]/DATABASE")
    return given, None


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
