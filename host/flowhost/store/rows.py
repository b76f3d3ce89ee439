"""The rows of the state database: a run's record, and what an event changes besides the
event log (the run's status, its interventions)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    RunStarted,
)
from flowhost.store import codec


def _corrupt(exc: BaseException, low: str) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB: not "malformed JSON", an error of one statement."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "not a database" in low or "disk image is malformed" in low or "corrupt" in low


def describe(exc: BaseException, path: Path, busy_timeout: float) -> str:
    """What went wrong with the state database, and what to do, in a sentence or two."""
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "database or disk is full" in low:
        return (f"{path}: the disk is full (sqlite: {text}). Free some space, or point "
                "--state-dir at another disk")
    if "locked" in low or "busy" in low:
        return (f"{path}: another flowhost process kept the state database locked for more "
                f"than {busy_timeout:g}s. Wait for it to finish, or use another --state-dir "
                "(FLOWHOST_LOCK_TIMEOUT sets the wait in seconds)")
    if _corrupt(exc, low):
        return (f"{path}: this is not a flowhost state database, or it is corrupt "
                f"(sqlite: {text}). Move it away to start afresh (the run history in it "
                "is lost), or pass another --state-dir")
    if "readonly" in low or "read-only" in low:
        return (f"{path}: the state database is read-only. Make {path.parent} and its files "
                "writable, or pass another --state-dir")
    if "unable to open" in low or isinstance(exc, OSError):
        return (f"{path}: cannot open the state database ({text}). Check that "
                f"{path.parent} is a directory you can read and write, or pass another "
                "--state-dir")
    return f"{path}: state database error: {text}"


class RunRecord(BaseModel):
    """One row of ``runs``: what ``resume`` needs to run it again."""

    model_config = ConfigDict(frozen=True)
    run_no: int
    run_id: str
    workflow_id: str
    status: str
    spec_text: str
    spec_path: str
    spec_redacted: bool
    overrides: list[str]
    cwd: str
    total_steps: int
    created_at: float
    updated_at: float
    finished_at: float | None
    pid: int | None


_RUN_COLUMNS = ("run_no, run_id, workflow_id, status, spec_text, spec_path, spec_redacted, "
                "overrides, cwd, total_steps, created_at, updated_at, finished_at, pid")


def live_status(record: RunRecord, owned: Callable[[RunRecord], bool]) -> str:
    """``running`` only while someone runs it (``owned``, asked only then); ``interrupted``
    once that one died."""
    return "interrupted" if record.status == "running" and not owned(record) else record.status


def _record(row: tuple[object, ...]) -> RunRecord:
    names = [name.strip() for name in _RUN_COLUMNS.split(",")]
    data = dict(zip(names, row, strict=True))
    data["overrides"] = json.loads(str(data["overrides"]))
    return RunRecord.model_validate(data)


def _insert_run(conn: sqlite3.Connection, run_id: str, workflow_id: str, spec_text: str,
                spec_path: str, spec_redacted: bool, overrides: list[str], cwd: str,
                total_steps: int, status: str) -> int:
    now = time.time()
    cursor = conn.execute(
        "INSERT INTO runs (run_id, workflow_id, status, spec_text, spec_path, "
        "spec_redacted, overrides, cwd, total_steps, created_at, updated_at, pid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, workflow_id, status, spec_text, spec_path, int(spec_redacted),
         json.dumps(overrides), cwd, total_steps, now, now, os.getpid()))
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


SEQ_BITS = 32  # events.id is (run_no << SEQ_BITS) | seq
# How many steps of a run (its event range: two parameters) have succeeded.
SUCCEEDED = ("SELECT count(DISTINCT step_id) FROM events WHERE id BETWEEN ? AND ? AND "
             "type = 'StepFinished' AND json_extract(payload, '$.status') = 'success'")


def side_tables(conn: sqlite3.Connection, run_no: int, seq: int, event: Event,
                mask: Callable[[str], str] = str) -> None:
    """What an event changes besides the log: the run's status, its interventions (their
    texts through ``mask``, which hides secrets)."""
    now = time.time()
    if isinstance(event, RunStarted):
        conn.execute("UPDATE runs SET status = 'running', updated_at = ?, pid = ?, "
                     "finished_at = NULL, steps_done = NULL WHERE run_no = ?",
                     (now, os.getpid(), run_no))
    elif isinstance(event, RunFinished):
        finished = event.ts if event.status != "waiting" else None
        conn.execute("UPDATE runs SET status = ?, updated_at = ?, finished_at = ? "
                     "WHERE run_no = ?", (event.status, now, finished, run_no))
        low = run_no << SEQ_BITS
        conn.execute(f"UPDATE runs SET steps_done = ({SUCCEEDED}) WHERE run_no = ?",
                     (low, low + (1 << SEQ_BITS) - 1, run_no))
    elif isinstance(event, InterventionRequested):
        conn.execute(
            "INSERT OR REPLACE INTO interventions (run_no, step_id, seq, plugin, error, "
            "error_type, hint, attempts, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_no, event.step_id, seq, event.plugin, mask(event.error), event.error_type,
             mask(event.hint) if event.hint is not None else None, event.attempts, event.ts))
    elif isinstance(event, InterventionResolved):
        outputs = mask(codec.dumps(event.outputs)) if event.outputs is not None else None
        conn.execute(
            "UPDATE interventions SET action = ?, outputs = ?, decided_by = ?, "
            "resolved_at = ? WHERE run_no = ? AND step_id = ? AND action IS NULL",
            (event.action, outputs, event.by, event.ts, run_no, event.step_id))
