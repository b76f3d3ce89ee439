"""The PostgreSQL state store: every Protocol of ``flowhost.store.interface`` on one
database that several processes, on several machines, share (``--store postgresql://…``).

One connection per store object (a run, a command), used from one thread as SQLite's is;
it holds the store's run locks (``lease.py``) and carries the run's journal (``writer.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from flowhost.events import Event, InterventionRequested
from flowhost.problems import UserInputError, as_bytes, did_you_mean, is_utf8, quote_name
from flowhost.store import codec
from flowhost.store.interface import JournalWriter
from flowhost.store.postgres.claim import CHANNEL, Claiming
from flowhost.store.postgres.history import History, PostgresCache, next_seq
from flowhost.store.postgres.lease import DEFAULT_LEASE_SECONDS
from flowhost.store.postgres.reads import DATA_VERSION, EVENTS_AFTER, page_filter
from flowhost.store.postgres.rows import SUCCEEDED, insert_events, side_tables
from flowhost.store.rows import _RUN_COLUMNS, RunRecord, _record, live_status

if TYPE_CHECKING:
    from flowhost.engine import StepCache

UNFINISHED = ("queued", "running", "interrupted", "waiting")
_SELECT_RUN = f"SELECT {_RUN_COLUMNS} FROM runs"
_BY_REQUEST = ("SELECT r.run_id FROM submissions AS s JOIN runs AS r ON r.run_no = s.run_no "
               "WHERE s.request_id = %s")


class PostgresStore(Claiming, History):
    state_dir: Path | None = None

    @classmethod
    def open(cls, url: str, *, busy_timeout: float | None = None, create: bool = True,
             lease_seconds: float = DEFAULT_LEASE_SECONDS,
             state_dir: Path | None = None) -> PostgresStore:
        """Connect to (and, with ``create``, prepare) the database of ``url``; exit-2
        errors for a bad URL, an unreachable server, a database of a newer flowhost.
        ``lease_seconds``: how long a run this store owns stays its own without renewal
        (renewed every third of it while the store is open). ``state_dir``: where the
        daemon of this host keeps its runs' working directories."""
        conn, parsed, timeout = cls.open_connection(url, busy_timeout=busy_timeout,
                                                    create=create)
        store = cls(conn, parsed, timeout)
        store._init_leases(lease_seconds)
        store.state_dir = state_dir
        return store

    def data_version(self) -> int:
        """A number that changes whenever anything is committed on the server (its WAL
        insert position): the daemon polls it, and reads the journals only when it moved
        (as SQLite's ``PRAGMA data_version``)."""
        row = self.one(DATA_VERSION)
        return int(row[0]) if row else 0

    def fenced(self, record: RunRecord) -> tuple[int, int] | None:
        """(run_no, epoch) to fence the run's writes by, while this store owns it."""
        epoch = self.fence(record.run_id)
        return None if epoch is None else (record.run_no, epoch)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------
    def _insert_run(self, conn: object, run_id: str, workflow_id: str, spec_text: str,
                    spec_path: str, spec_redacted: bool, overrides: list[str], cwd: str,
                    total_steps: int, status: str) -> int:
        now = time.time()
        row = self.conn.execute(
            "INSERT INTO runs (run_id, workflow_id, status, spec_text, spec_path, "
            "spec_redacted, overrides, cwd, total_steps, created_at, updated_at, pid) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING run_no",
            (run_id, workflow_id, status, spec_text, spec_path, spec_redacted,
             json.dumps(overrides), cwd, total_steps, now, now, os.getpid())).fetchone()
        return int(row[0])

    def create_run(self, *, run_id: str, workflow_id: str, spec_text: str, spec_path: str,
                   spec_redacted: bool, overrides: list[str], cwd: str, total_steps: int,
                   status: str = "running") -> RunRecord:
        with self.write() as conn:
            self._insert_run(conn, run_id, workflow_id, spec_text, spec_path, spec_redacted,
                             overrides, cwd, total_steps, status)
        return self.run(run_id)

    def submit_run(self, *, request_id: str, run_id: str, workflow_id: str, spec_text: str,
                   spec_path: str, spec_redacted: bool, overrides: list[str], cwd: str,
                   total_steps: int) -> tuple[RunRecord, bool]:
        """Record a ``queued`` run for a client's request, once (two replicas given the
        same request at once: the submission's key lets one win, the other sees its run)."""
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (request_id,))
            row = conn.execute(_BY_REQUEST, (request_id,)).fetchone()
            if row is None:
                run_no = self._insert_run(conn, run_id, workflow_id, spec_text, spec_path,
                                          spec_redacted, overrides, cwd, total_steps, "queued")
                conn.execute("INSERT INTO submissions (request_id, run_no) VALUES (%s, %s)",
                             (request_id, run_no))
                # a hint to every daemon: a run to claim (delivered once this commits)
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, run_id))
        return (self.run(run_id), True) if row is None else (self.run(str(row[0])), False)

    def submission(self, request_id: str) -> RunRecord | None:
        row = self.one(_BY_REQUEST, (request_id,))
        return None if row is None else self.run(str(row[0]))

    def runs_page(self, *, before: int | None = None, limit: int = 100,
                  status: str | None = None, workflow_id: str | None = None
                  ) -> list[RunRecord]:
        """Newest first, the runs recorded before run number ``before`` (a keyset page)."""
        where, params = page_filter(before, status, workflow_id)
        return [_record(row) for row in self.rows(
            f"{_SELECT_RUN} WHERE {where} ORDER BY run_no DESC LIMIT %(limit)s",
            {**params, "limit": max(limit, 1)})]

    def run(self, run_id: str) -> RunRecord:
        if not is_utf8(run_id) or "\0" in run_id:  # no id is: PostgreSQL text holds neither
            raise UserInputError(f"no run '{as_bytes(run_id)}' in {self.where}: run ids are "
                                 "UTF-8 text. `flowhost runs list` shows the runs of this "
                                 "store")
        row = self.one(f"{_SELECT_RUN} WHERE run_id = %s", (run_id,))
        if row is None:
            hint = did_you_mean(run_id, [r.run_id for r in self.runs(limit=200)])
            raise UserInputError(
                f"no run {quote_name(run_id)} in {self.where}" + (f" — {hint}" if hint else "")
                + ". `flowhost runs list` shows the runs of this store (--store picks "
                "another)")
        return _record(row)

    def runs(self, *, limit: int | None = None,
             statuses: Iterable[str] | None = None) -> list[RunRecord]:
        """Newest first."""
        sql, params = _SELECT_RUN, list[object]()
        if statuses is not None:
            sql += " WHERE status = ANY(%s)"
            params.append(list(statuses))
        sql += " ORDER BY run_no DESC"
        if limit is not None:  # beyond PostgreSQL's bigint, a limit means all of them
            sql += " LIMIT %s"
            params.append(min(int(limit), 2**63 - 1))
        return [_record(row) for row in self.rows(sql, params)]

    def run_ids(self, statuses: Iterable[str]) -> list[tuple[int, str]]:
        return [(int(run_no), str(run_id)) for run_no, run_id in self.rows(
            "SELECT run_no, run_id FROM runs WHERE status = ANY(%s) ORDER BY run_no DESC",
            (list(statuses),))]

    def latest_resumable(self) -> RunRecord | None:
        """The newest unfinished run that no live process is running."""
        return next((r for r in self.runs(statuses=UNFINISHED) if not self.owned(r)), None)

    def live_status(self, record: RunRecord) -> str:
        return live_status(record, self.owned)

    def replace_spec(self, record: RunRecord, *, spec_text: str, spec_redacted: bool,
                     total_steps: int) -> RunRecord:
        with self.write() as conn:
            conn.execute("UPDATE runs SET spec_text = %s, spec_redacted = %s, "
                         "total_steps = %s, updated_at = %s WHERE run_no = %s",
                         (spec_text, spec_redacted, total_steps, time.time(), record.run_no))
        return self.run(record.run_id)

    def steps_succeeded(self, record: RunRecord) -> int:
        """How many steps succeeded: recorded when its process ended, else counted."""
        row = self.one("SELECT steps_done FROM runs WHERE run_no = %s", (record.run_no,))
        if row is not None and row[0] is not None:
            return int(row[0])
        counted = self.one(SUCCEEDED, (record.run_no,))
        return int(counted[0]) if counted else 0

    # -- the journal -------------------------------------------------------------------
    def events(self, record: RunRecord, after_seq: int = 0) -> list[Event]:
        rows = self.rows(EVENTS_AFTER, (record.run_no, max(after_seq, 0)))
        decoded = (codec.decode(record.run_id, kind, step_id, payload, seq)
                   for seq, kind, step_id, payload in rows)
        return [event for event in decoded if event is not None]

    def next_seq(self, record: RunRecord) -> int:
        with self.failing_as_storage():
            return next_seq(self.conn, record.run_no)

    def append(self, record: RunRecord, events: Iterable[Event]) -> None:
        """Add events to a run's log at once, in one transaction (the run's row locked: two
        writers never take the same seq)."""
        with self.write() as conn:
            conn.execute("SELECT 1 FROM runs WHERE run_no = %s FOR UPDATE", (record.run_no,))
            seq = next_seq(conn, record.run_no)
            rows, given = [], list(events)
            for offset, event in enumerate(given, start=1):
                event.seq = seq + offset
                rows.append((record.run_no, event.seq, *codec.encode(event)))
            insert_events(conn, rows, self.fenced(record))
            for event in given:
                side_tables(conn, record.run_no, event.seq, event)

    def comments(self, record: RunRecord) -> dict[int, str]:
        rows = self.rows("SELECT seq, payload::json ->> 'comment' FROM events WHERE "
                         "run_no = %s AND type = 'InterventionResolved' AND "
                         "payload::json ->> 'comment' IS NOT NULL", (record.run_no,))
        return {int(seq): str(comment) for seq, comment in rows}

    def writer(self, record: RunRecord, *, cache: StepCache | None = None,
               secrets: Iterable[str] = (),
               inputs_key: Callable[[str], str | None] | None = None) -> JournalWriter:
        from flowhost.store.postgres.writer import PostgresWriter

        assert cache is None or isinstance(cache, PostgresCache)
        return PostgresWriter(self, record, cache=cache, secrets=secrets,
                              inputs_key=inputs_key)

    def open_questions(self, record: RunRecord) -> dict[str, InterventionRequested]:
        """The run's questions without an answer (in its log, or recorded), by step."""
        from flowhost.store.checkpoint import read

        waiting = read(self.events(record)).waiting
        if not waiting:
            return waiting
        answered = self.answers(record)
        return {sid: asked for sid, asked in waiting.items() if asked.seq not in answered}
