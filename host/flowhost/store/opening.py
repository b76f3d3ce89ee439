"""Opening a state dir safely: the directory checked (or made private), the database file
made 0600 before SQLite first writes it, WAL mode and the schema, and whatever is wrong said
as a ``UserInputError`` (exit 2) with what to do.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

from flowhost.problems import UserInputError, as_bytes, is_utf8
from flowhost.store.rows import describe
from flowhost.store.schema import LATEST, NewerSchemaError, migrate

DEFAULT_STATE_DIR = ".flowhost"
DB_NAME = "state.db"


def connect(directory: Path, timeout: float, create: bool) -> sqlite3.Connection:
    """The state database of ``directory`` (with ``create``: made if missing), ready."""
    path = directory / DB_NAME
    if not is_utf8(str(directory)):  # SQLite and the runs' records take UTF-8 paths
        raise UserInputError(f"--state-dir '{as_bytes(str(directory))}': not valid UTF-8; "
                             "name a state dir whose path is UTF-8 text")
    try:
        _check_state_dir(directory, create)
    except OSError as exc:  # a name too long, a symbolic link loop, no permission
        raise UserInputError(describe(exc, path, timeout)) from None
    conn: sqlite3.Connection | None = None
    try:
        # Made private when flowhost makes them (an existing one keeps its mode): the
        # results and outputs in them are no other local user's business
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if create:
            _create_private(path)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        _prepare(conn, timeout)
    except NewerSchemaError as exc:
        if conn is not None:
            conn.close()
        raise UserInputError(
            f"{path}: written by a newer flowhost (state schema {exc.found}; this one "
            f"knows up to {LATEST}). Upgrade flowhost, or pass another --state-dir"
        ) from None
    except (sqlite3.Error, OSError) as exc:
        if conn is not None:
            conn.close()
        raise UserInputError(describe(exc, path, timeout)) from None
    return conn


def _prepare(conn: sqlite3.Connection, timeout: float) -> None:
    """WAL mode and the schema. Until a new database is in WAL mode, two processes opening
    it at once can deadlock on SQLite's rollback-journal locks, which fails at once instead
    of waiting: so "locked" here is retried until the busy timeout is spent."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
            conn.execute("SELECT count(*) FROM runs").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _check_state_dir(directory: Path, create: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise UserInputError(f"--state-dir {directory}: is a file, not a directory; pass "
                             "a directory (it is created if missing)")
    if not create and not (directory / DB_NAME).exists():
        raise UserInputError(f"no flowhost state in {directory}: no run was recorded "
                             "there. Pass the --state-dir the run used (default "
                             f"$FLOWHOST_STATE_DIR or ./{DEFAULT_STATE_DIR})")


def _create_private(path: Path) -> None:
    """An empty database file of mode 0600, unless there is one (SQLite gives its -wal
    and -shm files the database's mode)."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
