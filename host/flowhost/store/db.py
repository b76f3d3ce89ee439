"""The state database: runs, their event logs, ownership (opening it safely:
``flowhost.store.opening``; the rows themselves: ``flowhost.store.rows``; durations, cache
housekeeping and roles: ``flowhost.store.history``).

One SQLite file, ``state.db``, in the state dir (default ``./.flowhost/``), in WAL mode with
``synchronous=NORMAL``: readers never block the writer, a commit survives the process being
killed (a power cut may lose the last few commits, never corrupt the file). Several
processes may share a state dir: every write is a short ``BEGIN IMMEDIATE`` transaction
and waits up to ``busy_timeout`` seconds for another writer. Whatever is wrong with the
state dir when it is opened becomes a ``UserInputError`` (exit 2) that says what to do.
A run in flight keeps its latest checkpoints in its step log beside the database
(``flowhost.store.steplog``); every read of a run's events takes them in.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
)
from flowhost.problems import (
    StorageError,
    UserInputError,
    as_bytes,
    did_you_mean,
    is_utf8,
    quote_name,
)
from flowhost.store import codec, steplog
from flowhost.store.history import History
from flowhost.store.interface import JournalWriter, Lease
from flowhost.store.lease import RunLocks
from flowhost.store.opening import DB_NAME, connect
from flowhost.store.rows import (
    _RUN_COLUMNS,
    SEQ_BITS,
    SUCCEEDED,
    RunRecord,
    _insert_run,
    _record,
    describe,
    live_status,
    side_tables,
)

if TYPE_CHECKING:
    from flowhost.engine import StepCache
    from flowhost.invokers import RecordedSchemas, RemoteDescriptor

DEFAULT_BUSY_TIMEOUT = 10.0
# "cancelled" is final (a person or a program cancelled it); "interrupted" is resumable.
UNFINISHED = ("queued", "running", "interrupted", "waiting")
_SQLITE_MAX_INT = 2**63 - 1


def event_range(run_no: int) -> tuple[int, int]:
    low = run_no << SEQ_BITS
    return low, low + (1 << SEQ_BITS) - 1


class Store(History):
    """An open state dir. Use from one thread (the event loop's, during a run)."""

    def __init__(self, conn: sqlite3.Connection, state_dir: Path, busy_timeout: float) -> None:
        self.conn = conn
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self.busy_timeout = busy_timeout
        self.locks = RunLocks.of(state_dir)
        self.steplog_dir = state_dir / steplog.DIRNAME
        self._leased: dict[str, int] = {}  # run id -> run_no, of the leases held

    @classmethod
    def open(cls, state_dir: str | Path, *, busy_timeout: float | None = None,
             create: bool = True) -> Store:
        """Open (or, with ``create``, make) the state dir; exit-2 errors for what is wrong."""
        directory = Path(state_dir)
        timeout = DEFAULT_BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        return cls(connect(directory, timeout, create), directory, timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; database errors become a ``StorageError``."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(describe(exc, self.path, self.busy_timeout)) from None

    # -- runs --------------------------------------------------------------------------
    def create_run(self, *, run_id: str, workflow_id: str, spec_text: str, spec_path: str,
                   spec_redacted: bool, overrides: list[str], cwd: str, total_steps: int,
                   status: str = "running") -> RunRecord:
        with self.write() as conn:
            _insert_run(conn, run_id, workflow_id, spec_text, spec_path, spec_redacted,
                        overrides, cwd, total_steps, status)
        return self.run(run_id)

    def submit_run(self, *, request_id: str, run_id: str, workflow_id: str, spec_text: str,
                   spec_path: str, spec_redacted: bool, overrides: list[str], cwd: str,
                   total_steps: int) -> tuple[RunRecord, bool]:
        """Record a ``queued`` run for a client's request, once: a request id seen before
        gives its run back, with False."""
        with self.write() as conn:
            row = conn.execute("SELECT r.run_id FROM submissions AS s JOIN runs AS r "
                               "ON r.run_no = s.run_no WHERE s.request_id = ?",
                               (request_id,)).fetchone()
            if row is None:
                run_no = _insert_run(conn, run_id, workflow_id, spec_text, spec_path,
                                     spec_redacted, overrides, cwd, total_steps, "queued")
                conn.execute("INSERT INTO submissions (request_id, run_no) VALUES (?, ?)",
                             (request_id, run_no))
        return (self.run(run_id), True) if row is None else (self.run(str(row[0])), False)

    def submission(self, request_id: str) -> RunRecord | None:
        """The run recorded for a client's request id, if one was."""
        row = self.conn.execute("SELECT r.run_id FROM submissions AS s JOIN runs AS r "
                                "ON r.run_no = s.run_no WHERE s.request_id = ?",
                                (request_id,)).fetchone()
        return None if row is None else self.run(str(row[0]))

    def runs_page(self, *, before: int | None = None, limit: int = 100,
                  status: str | None = None, workflow_id: str | None = None
                  ) -> list[RunRecord]:
        """Newest first, the runs recorded before run number ``before`` (a keyset page)."""
        where: list[str] = ["1 = 1"]
        params: list[int | str] = []
        if before is not None:
            where.append("run_no < ?")
            params.append(before)
        if status:
            where.append("status = ?")
            params.append(status)
        if workflow_id:
            where.append("workflow_id = ?")
            params.append(workflow_id)
        sql = (f"SELECT {_RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
               "ORDER BY run_no DESC LIMIT ?")
        return [_record(row) for row in self.conn.execute(sql, [*params, max(limit, 1)])]

    def run(self, run_id: str) -> RunRecord:
        if not is_utf8(run_id):  # no id is: SQLite would refuse to encode it
            raise UserInputError(f"no run '{as_bytes(run_id)}' in {self.path}: run ids are "
                                 "UTF-8 text. `flowhost runs list` shows the runs of this "
                                 "state dir")
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?",
                                (run_id,)).fetchone()
        if row is None:
            recent = [r.run_id for r in self.runs(limit=200)]
            hint = did_you_mean(run_id, recent)
            raise UserInputError(
                f"no run {quote_name(run_id)} in {self.path}" + (f" — {hint}" if hint else "")
                + ". `flowhost runs list` shows the runs of this state dir (--state-dir "
                "picks another)")
        return _record(row)

    def runs(self, *, limit: int | None = None,
             statuses: Iterable[str] | None = None) -> list[RunRecord]:
        """Newest first."""
        where, params = "", []
        if statuses is not None:
            wanted = list(statuses)
            where = f"WHERE status IN ({', '.join('?' * len(wanted))})"
            params += wanted
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY run_no DESC"
        if limit is not None:  # beyond SQLite's integers, a limit means all of them
            sql += f" LIMIT {min(int(limit), _SQLITE_MAX_INT)}"
        return [_record(row) for row in self.conn.execute(sql, params)]

    def run_ids(self, statuses: Iterable[str]) -> list[tuple[int, str]]:
        wanted = list(statuses)
        return [(int(run_no), str(run_id)) for run_no, run_id in self.conn.execute(
            f"SELECT run_no, run_id FROM runs WHERE status IN ({', '.join('?' * len(wanted))})"
            " ORDER BY run_no DESC", wanted)]

    def latest_resumable(self) -> RunRecord | None:
        """The newest unfinished run that no live process is running."""
        for record in self.runs(statuses=UNFINISHED):
            if not self.owned(record):
                return record
        return None

    def live_status(self, record: RunRecord) -> str:
        return live_status(record, self.owned)

    def replace_spec(self, record: RunRecord, *, spec_text: str, spec_redacted: bool,
                     total_steps: int) -> RunRecord:
        with self.write() as conn:
            conn.execute("UPDATE runs SET spec_text = ?, spec_redacted = ?, total_steps = ?, "
                         "updated_at = ? WHERE run_no = ?",
                         (spec_text, int(spec_redacted), total_steps, time.time(),
                          record.run_no))
        return self.run(record.run_id)

    def set_status(self, record: RunRecord, status: str) -> None:
        with self.write() as conn:
            conn.execute("UPDATE runs SET status = ?, updated_at = ?, pid = ? WHERE run_no = ?",
                         (status, time.time(), os.getpid(), record.run_no))

    # -- events ------------------------------------------------------------------------
    def events(self, record: RunRecord, after_seq: int = 0) -> list[Event]:
        """The run's events with ``seq`` past ``after_seq``, in order."""
        low, high = event_range(record.run_no)
        start = low + max(after_seq, 0)
        logged = steplog.read(self.steplog_dir, record.run_no, record.run_id)  # (first)
        rows: list[steplog.Row] = self.conn.execute(
            "SELECT id, type, step_id, payload FROM events WHERE id BETWEEN ? AND ? "
            "ORDER BY id", (start, high)).fetchall()
        if logged:
            rows = steplog.merged(rows, logged, start)
        decoded = (codec.decode(record.run_id, kind, step_id, payload, row_id - low + 1)
                   for row_id, kind, step_id, payload in rows)
        return [event for event in decoded if event is not None]

    def writer(self, record: RunRecord, *, cache: StepCache | None = None,
               secrets: Iterable[str] = (),
               inputs_key: Callable[[str], str | None] | None = None) -> JournalWriter:
        """The run's checkpoint: appends its events as the engine emits them.
        ``inputs_key``: a step's inputs key (by step id), recorded with its duration."""
        from flowhost.store.cache import StoreCache
        from flowhost.store.listener import StoreListener

        assert cache is None or isinstance(cache, StoreCache)
        return StoreListener(self, record, cache=cache, secrets=secrets,
                             inputs_key=inputs_key)

    def step_cache(self, secrets: Iterable[str] = ()) -> StepCache:
        from flowhost.store.cache import StoreCache

        return StoreCache(self, secrets)

    def open_questions(self, record: RunRecord) -> dict[str, InterventionRequested]:
        """The run's questions to a person that have no answer yet (in its log, nor
        recorded for its owner to log), by step."""
        from flowhost.store.checkpoint import read

        waiting = read(self.events(record)).waiting
        if not waiting:
            return waiting
        answered = self.answers(record)
        return {sid: asked for sid, asked in waiting.items() if asked.seq not in answered}

    # -- ownership ---------------------------------------------------------------------
    def acquire(self, record: RunRecord, owner: str) -> Lease | None:
        """Own the run: its process lock (dropped by the OS when the process dies, so a
        crashed run is free at once), and one more epoch in ``leases``."""
        if not self.locks.acquire(record.run_no):
            return None
        try:
            with self.write() as conn:
                # what an owner that died left in its step log (none writes it now)
                left = steplog.absorb(conn, self.steplog_dir, record.run_no, record.run_id)
                row = conn.execute(
                    "INSERT INTO leases (run_no, owner, epoch, acquired_at) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (run_no) DO UPDATE SET owner = excluded.owner, "
                    "epoch = epoch + 1, acquired_at = excluded.acquired_at RETURNING epoch",
                    (record.run_no, owner, time.time())).fetchone()
        except BaseException:
            self.locks.release(record.run_no)
            raise
        steplog.remove(left)
        self._leased[record.run_id] = record.run_no
        return Lease(record.run_id, owner, int(row[0]))

    def release(self, lease: Lease) -> None:
        """Let go of the run (also after ``close``; a second time is a no-op)."""
        run_no = self._leased.pop(lease.run_id, None)
        if run_no is not None:
            self.locks.release(run_no)

    def owned(self, record: RunRecord) -> bool:
        return self.locks.held(record.run_no) or self.locks.busy(record.run_no)

    def steps_succeeded(self, record: RunRecord) -> int:
        """How many of the run's steps have succeeded so far: recorded when its process
        ended, counted from its events while one runs it."""
        row = self.conn.execute("SELECT steps_done FROM runs WHERE run_no = ?",
                                (record.run_no,)).fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        if steplog.files(self.steplog_dir, record.run_no):
            return steplog.succeeded(self.events(record))
        low, high = event_range(record.run_no)
        counted = self.conn.execute(SUCCEEDED, (low, high)).fetchone()
        return int(counted[0])

    def next_seq(self, record: RunRecord) -> int:
        low, high = event_range(record.run_no)
        logged = steplog.read(self.steplog_dir, record.run_no, record.run_id)  # (first)
        row = self.conn.execute("SELECT max(id) FROM events WHERE id BETWEEN ? AND ?",
                                (low, high)).fetchone()
        last = max(-1 if row[0] is None else int(row[0]), logged[-1][0] if logged else -1)
        return 0 if last < 0 else last - low + 1

    def data_version(self) -> int:
        """Changes whenever another connection commits, or a step log is written."""
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        return hash((version, steplog.signature(self.steplog_dir)))

    def append(self, record: RunRecord, events: Iterable[Event]) -> None:
        """Add events to a run's log at once (decisions, and what resume applies)."""
        low = record.run_no << SEQ_BITS
        with self.write() as conn:
            seq = self.next_seq(record)
            for offset, event in enumerate(events):
                event.seq = seq + offset + 1
                kind, step_id, payload = codec.encode(event)
                conn.execute("INSERT INTO events (id, type, step_id, payload) "
                             "VALUES (?, ?, ?, ?)", (low + seq + offset, kind, step_id, payload))
                side_tables(conn, record.run_no, seq + offset, event)

    def append_decision(self, record: RunRecord, event: InterventionResolved, *,
                        request_seq: int, log: bool = True
                        ) -> tuple[InterventionResolved, bool]:
        """Record an answer to the question of seq ``request_seq``, atomically and only if
        it has none yet: (the answer that counts, whether it is this one). ``log``: the
        caller owns the run, and the answer goes into its log in the same transaction;
        else the run's owner logs it (``answers``). See ``flowhost.store.answers``."""
        from flowhost.store import answers

        return answers.take(self, record, event, request_seq, log)

    def answers(self, record: RunRecord) -> dict[int, InterventionResolved]:
        """The answers recorded for the run's questions, by the seq of each question."""
        from flowhost.store import answers

        return answers.recorded(self, record)

    def comments(self, record: RunRecord) -> dict[int, str]:
        """The comments given with the run's decisions, by the seq of each."""
        low, high = event_range(record.run_no)
        rows = self.conn.execute(
            "SELECT id, json_extract(payload, '$.comment') FROM events WHERE id BETWEEN ? "
            "AND ? AND type = 'InterventionResolved' AND json_extract(payload, '$.comment') "
            "IS NOT NULL", (low, high))
        return {int(row_id) - low + 1: str(comment) for row_id, comment in rows}

    # -- what remote plugins reported ---------------------------------------------------
    def recorded_schemas(self, target: str, plugin: str) -> RecordedSchemas | None:
        """What ``plugin`` on server ``target`` last reported of itself, if it ever did."""
        from flowhost.store import schemas

        return schemas.recorded(self, target, plugin)

    def record_schemas(self, target: str, plugins: Iterable[RemoteDescriptor]) -> None:
        """Keep what server ``target`` reports of its plugins (a write only for news)."""
        from flowhost.store import schemas

        schemas.record(self, target, plugins)
