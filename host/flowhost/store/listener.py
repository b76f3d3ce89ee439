"""The checkpoint: a listener that appends a run's events to its journal.

The engine relies on synchronous listeners: when ``emit`` returns, every listener has seen
the event. This one makes ``StepFinished`` durable before returning, so a step's outputs
are kept before any step that depends on it starts: it appends the step's events to the
run's step log (``flowhost.store.steplog``: one ``write``, where a SQLite commit would
cost several times the step). The run's start and end, and the requests and answers of
manual interventions, are committed to the state database at once, with every row logged
before them. Other events (a step's start, attempts, progress) wait in memory and go out
with the next checkpoint, or as soon as the event loop is idle (a step awaiting its
plugin): a chain of fast steps costs one write per step, and a step that runs for a while
is known to have started.

The logged rows move into the database in batches, with the cache entries and plugin
durations: every 1,024 rows, every two seconds, and at the end of the run. Losing a batch
of cache entries or durations in a crash costs a cache miss, no more; the logged rows are
moved by whoever takes the run next.

A write that fails (disk full, database locked for too long) makes the listener stop
writing and call ``on_failure`` with a message; every earlier checkpoint stays intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    RunStarted,
    StepFinished,
)
from flowhost.problems import StorageError
from flowhost.store import codec, steplog
from flowhost.store.cache import StoreCache
from flowhost.store.db import Store
from flowhost.store.guard import SecretGuard
from flowhost.store.rows import SEQ_BITS, RunRecord, describe, side_tables

_INSERT_EVENT = "INSERT INTO events (id, type, step_id, payload) VALUES (?, ?, ?, ?)"
_INSERT_DURATION = ("INSERT INTO durations (plugin, duration_s, at, inputs) "
                    "VALUES (?, ?, ?, ?)")
_INSERT_CACHE = ("INSERT OR REPLACE INTO cache (plugin, key, version, event_id, created_at) "
                 "VALUES (?, ?, ?, ?, ?)")
_CHUNK = 100  # rows per statement when writing a batch: a third cheaper than executemany
_BATCH_ROWS = 1024  # cache entries and durations, or events logged, before a batch
_BATCH_AGE_S = 2.0
_DURATIONS_KEPT = 20  # per plugin and batch: the estimate takes the median of the latest 20
_ALSO_DURABLE = frozenset({RunStarted, RunFinished, InterventionRequested, InterventionResolved})
_ROWS = codec.ROWS
_SEQ_MASK = (1 << SEQ_BITS) - 1


class StoreListener:
    """Subscribe it to the run's ``EventBus`` first, before the progress view."""

    def __init__(self, store: Store, record: RunRecord, *, cache: StoreCache | None = None,
                 on_failure: Callable[[str], None] | None = None,
                 secrets: Iterable[str] = (),
                 inputs_key: Callable[[str], str | None] | None = None) -> None:
        self.store = store
        self.record = record
        self.cache = cache
        self.on_failure = on_failure
        self.failure: str | None = None
        self._conn = store.conn
        self._next_id = (record.run_no << SEQ_BITS) + store.next_seq(record)
        self._pending: list[int | str | None] = []  # flat: 4 values per event row
        self._logged: list[int | str | None] = []  # in the step log, not in the database
        self._log = steplog.StepLog(store.steplog_dir, record.run_no, record.run_id)
        self._due: asyncio.TimerHandle | None = None  # the batch of a log that sits still
        self._durations: list[tuple[str, float, float, str]] = []  # ... and the step id
        # a step's inputs key, worked out only for the durations a batch keeps
        self._inputs_key = inputs_key
        self._batched = 0  # cache entries and durations not written yet
        self._batch_since = time.time()
        self._idle: asyncio.Handle | None = None
        self._guard = SecretGuard(secrets)
        self._masks = bool(self._guard)  # (a plain flag: the check runs for every event)

    def __call__(self, event: Event) -> None:
        if self.failure is not None:
            return
        cls = type(event)
        event.seq = (self._next_id & _SEQ_MASK) + 1
        try:
            row = _ROWS[cls](event, self._next_id)
        except StorageError as exc:  # NaN in it: this event cannot be written
            self._fail(exc)
            return
        if self._masks and (masked := self._guard.payload(row[3])) is not row[3]:
            row = (*row[:3], masked)
        self._pending += row
        self._next_id += 1
        if cls is StepFinished:
            self._finished(event)  # type: ignore[arg-type]
        elif cls in _ALSO_DURABLE:
            self._commit(event)
        elif self._idle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._commit(None)
            else:
                self._idle = loop.call_soon(self._flush_when_idle)

    def _finished(self, event: StepFinished) -> None:
        """The checkpoint of a step: its rows into the step log (a batch into the database
        when one is due)."""
        if self.cache is not None:
            self._batched += self.cache.settle(event, self._next_id - 1)
        if event.status == "success" and not event.cached:
            self._durations.append((event.used_plugin, event.duration_s, event.ts,
                                    event.step_id))
            self._batched += 1
        if (self._batched >= _BATCH_ROWS or len(self._logged) >= _BATCH_ROWS * 4
                or event.ts - self._batch_since >= _BATCH_AGE_S):
            self._commit(None, everything=True)
        else:
            self._append_log()

    def _append_log(self) -> None:
        pending = self._pending
        started = not self._log.open
        try:
            self._log.append(pending)
        except (OSError, UnicodeError) as exc:
            self._fail(exc)
            return
        self._logged += pending
        pending.clear()
        if started and self._due is None:
            try:  # a log that sits still (a long step after fast ones) goes in all the same
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._due = loop.call_later(_BATCH_AGE_S, self._batch_when_due)

    def _batch_when_due(self) -> None:
        self._due = None
        if self._logged and self.failure is None:
            self._commit(None, everything=True)

    def _flush_when_idle(self) -> None:
        self._idle = None
        if self._pending and self.failure is None:
            self._append_log()

    def close(self) -> None:
        """Write whatever is left (events, cache entries, durations) into the database."""
        for handle in (self._idle, self._due):
            if handle is not None:
                handle.cancel()
        self._idle = self._due = None
        if self.failure is None and (self._pending or self._logged or self._batched):
            self._commit(None, everything=True)
        self._log.close()

    # -- writing -----------------------------------------------------------------------
    def _commit(self, event: Event | None, *, everything: bool = False) -> None:
        """Into the database in one transaction: the logged rows, the pending ones, and
        ``event``'s side tables; the batch of cache entries and durations too when it is
        due (``everything``: now)."""
        conn, pending, logged = self._conn, self._pending, self._logged
        batch = self._batched and (
            everything or isinstance(event, RunFinished) or self._batched >= _BATCH_ROWS
            or time.time() - self._batch_since >= _BATCH_AGE_S)
        if not pending and not logged and not batch and event is None:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            _insert_rows(conn, logged)
            _insert_rows(conn, pending)
            if event is not None:
                seq = (self._next_id - 1) & _SEQ_MASK
                side_tables(conn, self.record.run_no, seq, event, self._guard.redactor.text)
            if batch:
                self._write_batch(conn)
            conn.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error, or text SQLite cannot encode
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._fail(exc)
            return
        pending.clear()
        if logged:
            logged.clear()
            self._log.moved()
        if batch or everything:
            self._batched = 0
            self._batch_since = time.time()

    def _write_batch(self, conn: sqlite3.Connection) -> None:
        if self._durations:
            _insert_all(conn, _INSERT_DURATION, kept_durations(self._durations,
                                                               self._inputs_key))
            self._durations = []
        if self.cache is not None:
            _insert_all(conn, _INSERT_CACHE, self.cache.drain())

    def _fail(self, exc: Exception) -> None:
        self._log.close()  # what it holds stays, for whoever takes the run next
        if isinstance(exc, UnicodeError):
            why = (f"an event holds text that is not valid Unicode ({exc}); a plugin or an "
                   "input gave it")
        elif isinstance(exc, StorageError):
            why = str(exc)
        elif isinstance(exc, OSError):
            why = steplog.describe(exc, self.store.steplog_dir)
        else:
            why = describe(exc, self.store.path, self.store.busy_timeout)
        self.failure = f"cannot checkpoint run {self.record.run_id}: {why}"
        if self.on_failure is not None:
            self.on_failure(self.failure)


def _insert_rows(conn: sqlite3.Connection, flat: Sequence[int | str | None]) -> None:
    """Event rows (flat: four values a row), up to ``_CHUNK`` per statement."""
    for start in range(0, len(flat), 4 * _CHUNK):
        chunk = flat[start:start + 4 * _CHUNK]
        conn.execute(_INSERT_EVENT + ", (?, ?, ?, ?)" * ((len(chunk) >> 2) - 1), chunk)


def _insert_all(conn: sqlite3.Connection, insert: str, rows: Sequence[tuple[object, ...]]) -> None:
    """``insert`` (one ``VALUES (...)`` row) for every row, up to ``_CHUNK`` per statement."""
    if not rows:
        return
    values = insert[insert.index("VALUES") + len("VALUES"):]
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        sql = insert + ("," + values) * (len(chunk) - 1)
        conn.execute(sql, [value for row in chunk for value in row])


def kept_durations(durations: Sequence[tuple[str, float, float, str]],
                   inputs_key: Callable[[str], str | None] | None
                   ) -> list[tuple[str, float, float, str | None]]:
    """The rows of a batch of (plugin, seconds, at, step id) worth writing: the latest
    ``_DURATIONS_KEPT`` of each plugin, each with its step's inputs key (every backend's)."""
    latest: dict[str, deque[tuple[str, float, float, str]]] = {}
    for row in durations:
        latest.setdefault(row[0], deque(maxlen=_DURATIONS_KEPT)).append(row)
    key = inputs_key or _no_key
    return [(plugin, seconds, at, key(step_id)) for kept in latest.values()
            for plugin, seconds, at, step_id in kept]


def _no_key(step_id: str) -> None:
    return None
