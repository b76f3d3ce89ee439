"""The checkpoint on PostgreSQL: a listener that appends a run's events as they happen,
with the SQLite listener's promises (``flowhost.store.listener``): ``StepFinished``, the
run's start and end and the questions and answers are committed before the call returns;
other events wait in memory for the next commit, or for the event loop to be idle; cache
entries and durations go in batches (every thousand, every two seconds, at the end).

The common checkpoint is one multi-row INSERT, its own transaction (autocommit): one round
trip to the server per step (behind a pooler in transaction mode too, where the lock
timeout goes with it: ``rows.insert_events``). What goes out when the loop is idle (a
step's start) is not waited for on the server's disk: a chain of fast steps costs one
flushed commit per step.
Writes go over the store's own connection, the one holding the run's lock, and are fenced
by the run's lease epoch (``flowhost.store.postgres.lease``): an owner that lost its lease
writes nothing more. A failed write stops the writer and calls ``on_failure`` with what
happened; every earlier commit stays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flowhost.events import Event, RunFinished, StepFinished
from flowhost.store import codec
from flowhost.store.guard import SecretGuard
from flowhost.store.listener import _ALSO_DURABLE, _BATCH_AGE_S, _BATCH_ROWS, kept_durations
from flowhost.store.postgres.errors import describe
from flowhost.store.postgres.history import PostgresCache, next_seq
from flowhost.store.postgres.lease import LeaseLost
from flowhost.store.postgres.rows import insert_events, side_tables

if TYPE_CHECKING:
    from flowhost.store.postgres.store import PostgresStore
    from flowhost.store.rows import RunRecord

_ROWS = codec.ROWS
_INSERT_DURATION = "INSERT INTO durations (plugin, duration_s, at, inputs) VALUES "
_INSERT_CACHE = ("INSERT INTO cache (plugin, key, version, seq, created_at, run_no) VALUES "
                 "{} ON CONFLICT (plugin, key) DO UPDATE SET version = EXCLUDED.version, "
                 "run_no = EXCLUDED.run_no, seq = EXCLUDED.seq, "
                 "created_at = EXCLUDED.created_at")


class PostgresWriter:
    def __init__(self, store: PostgresStore, record: RunRecord, *,
                 cache: PostgresCache | None = None, secrets: Iterable[str] = (),
                 inputs_key: Callable[[str], str | None] | None = None) -> None:
        self.store = store
        self.record = record
        self.cache = cache
        self.on_failure: Callable[[str], None] | None = None
        self.failure: str | None = None
        self._run_no = record.run_no
        with store.failing_as_storage():
            self._seq = next_seq(store.conn, record.run_no)
        self._pending: list[tuple[object, ...]] = []
        self._durations: list[tuple[str, float, float, str]] = []
        self._inputs_key = inputs_key
        self._batched = 0
        self._batch_since = time.time()
        self._idle: asyncio.Handle | None = None
        self._guard = SecretGuard(secrets)

    def __call__(self, event: Event) -> None:
        if self.failure is not None:
            return
        cls = type(event)
        self._seq += 1
        event.seq = self._seq
        _, kind, step_id, payload = _ROWS[cls](event, self._seq)
        payload = self._guard.payload(payload)
        self._pending.append((self._run_no, self._seq, kind, step_id, payload))
        if cls is StepFinished:
            self._settle(event)  # type: ignore[arg-type]
            self._commit(None)
        elif cls in _ALSO_DURABLE:
            self._commit(event)
        elif self._idle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._commit(None)
            else:
                self._idle = loop.call_soon(self._flush_when_idle)

    def _settle(self, event: StepFinished) -> None:
        if self.cache is not None:
            self._batched += self.cache.settle(event, self._seq)
        if event.status == "success" and not event.cached:
            self._durations.append((event.used_plugin, event.duration_s, event.ts,
                                    event.step_id))
            self._batched += 1

    def _flush_when_idle(self) -> None:
        self._idle = None
        if self._pending and self.failure is None:
            self._commit(None, durable=False)

    def close(self) -> None:
        """Write whatever is left (events, cache entries, durations)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.failure is None and (self._pending or self._batched):
            self._commit(None, everything=True)

    def _commit(self, event: Event | None, *, everything: bool = False,
                durable: bool = True) -> None:
        batch = self._batched and (
            everything or isinstance(event, RunFinished) or self._batched >= _BATCH_ROWS
            or time.time() - self._batch_since >= _BATCH_AGE_S)
        conn = self.store.conn
        try:
            fence = self.store.fenced(self.record)
            if event is None and not batch:  # one statement, one transaction
                insert_events(conn, self._pending, fence, durable=durable,
                              lock_timeout_ms=self.store.statement_lock_timeout)
            else:
                with self.store.transaction():
                    insert_events(conn, self._pending, fence)
                    if event is not None:
                        side_tables(conn, self._run_no, self._seq, event,
                                    self._guard.redactor.text)
                    if batch:
                        self._write_batch()
        except Exception as exc:  # psycopg.Error, or text PostgreSQL cannot take
            self._fail(exc)
            return
        self._pending.clear()
        if batch:
            self._batched = 0
            self._batch_since = time.time()

    def _write_batch(self) -> None:
        conn = self.store.conn
        if self._durations:
            rows = kept_durations(self._durations, self._inputs_key)
            conn.execute(_INSERT_DURATION + ", ".join(["(%s, %s, %s, %s)"] * len(rows)),
                         [value for row in rows for value in row])
            self._durations = []
        if self.cache is not None and (entries := self.cache.drain()):
            # (the last entry of a key wins, as INSERT OR REPLACE does in SQLite)
            unique = list({(plugin, key): (plugin, key, version, seq, at, self._run_no)
                           for plugin, key, version, seq, at in entries}.values())
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(unique))
            conn.execute(_INSERT_CACHE.format(values), [v for row in unique for v in row])

    def _fail(self, exc: Exception) -> None:
        if isinstance(exc, UnicodeError) or (isinstance(exc, ValueError)
                                             and "NUL" in str(exc)):
            why = (f"an event holds text that PostgreSQL cannot store ({exc}); a plugin or "
                   "an input gave it")
        elif isinstance(exc, LeaseLost):
            why = exc.why
        elif self.store.conn.closed and self.store.holds(self.record):  # (ended by a taker)
            why = LeaseLost(self.record.run_id).why
        else:
            why = describe(exc, self.store.where, self.store.busy_timeout)
        self.failure = f"cannot checkpoint run {self.record.run_id}: {why}"
        if self.on_failure is not None:
            self.on_failure(self.failure)
