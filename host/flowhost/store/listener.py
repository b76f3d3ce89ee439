"""The checkpoint: a listener that appends a run's events to the state database.

The engine relies on synchronous listeners: when ``emit`` returns, every listener has seen
the event. This one commits ``StepFinished`` (and the run's start and end, and the requests
and answers of manual interventions) before returning, so a step's outputs are durable
before any step that depends on it starts. Other events (a step's start, attempts,
progress) wait in memory and go out with the next commit, or as soon as the event loop is
idle (a step awaiting its plugin), whichever comes first: a chain of fast steps costs one
commit per step, and a step that runs for a while is known to have started.

Cache entries and plugin durations are written in batches (every thousand, every two
seconds, and at the end of the run): losing them in a crash costs a cache miss, no more.
The checkpoint itself is one INSERT statement (its own transaction) in the common case.

A write that fails (disk full, database locked for too long) makes the listener stop
writing and call ``on_failure`` with a message; every earlier commit stays intact.
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
from flowhost.store import codec
from flowhost.store.cache import StoreCache
from flowhost.store.db import Store
from flowhost.store.guard import SecretGuard
from flowhost.store.rows import SEQ_BITS, RunRecord, describe, side_tables

_INSERT_EVENT = "INSERT INTO events (id, type, step_id, payload) VALUES (?, ?, ?, ?)"
# one statement per number of rows (up to 63): the checkpoint is a single INSERT
_INSERT_ROWS = ["", *(_INSERT_EVENT + ", (?, ?, ?, ?)" * (n - 1) for n in range(1, 64))]
_INSERT_DURATION = ("INSERT INTO durations (plugin, duration_s, at, inputs) "
                    "VALUES (?, ?, ?, ?)")
_INSERT_CACHE = ("INSERT OR REPLACE INTO cache (plugin, key, version, event_id, created_at) "
                 "VALUES (?, ?, ?, ?, ?)")
_CHUNK = 100  # rows per statement when writing a batch: a third cheaper than executemany
_BATCH_ROWS = 1024
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
        self._cursor = store.conn.cursor()
        self._next_id = (record.run_no << SEQ_BITS) + store.next_seq(record)
        self._pending: list[int | str | None] = []  # flat: 4 values per event row
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
        """The checkpoint of a step: the fast path of ``_commit``, inlined (it runs once
        per step)."""
        if self.cache is not None:
            self._batched += self.cache.settle(event, self._next_id - 1)
        if event.status == "success" and not event.cached:
            self._durations.append((event.used_plugin, event.duration_s, event.ts,
                                    event.step_id))
            self._batched += 1
        pending = self._pending
        rows = len(pending) >> 2
        if (rows >= len(_INSERT_ROWS) or self._batched >= _BATCH_ROWS
                or event.ts - self._batch_since >= _BATCH_AGE_S):
            self._commit(None)
            return
        try:
            self._cursor.execute(_INSERT_ROWS[rows], pending)
        except Exception as exc:  # sqlite3.Error, or text SQLite cannot encode
            self._fail(exc)
        else:
            pending.clear()

    def _flush_when_idle(self) -> None:
        self._idle = None
        if self._pending and self.failure is None:
            self._commit(None)

    def close(self) -> None:
        """Write whatever is left (events, cache entries, durations)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.failure is None and (self._pending or self._batched):
            self._commit(None, everything=True)

    # -- writing -----------------------------------------------------------------------
    def _commit(self, event: Event | None, *, everything: bool = False) -> None:
        conn, pending = self._conn, self._pending
        batch = self._batched and (
            everything or isinstance(event, RunFinished) or self._batched >= _BATCH_ROWS
            or time.time() - self._batch_since >= _BATCH_AGE_S)
        rows = len(pending) >> 2
        if not rows and not batch and event is None:
            return
        try:
            if event is None and not batch and rows < len(_INSERT_ROWS):
                # The common checkpoint: one statement, which is its own transaction.
                self._cursor.execute(_INSERT_ROWS[rows], pending)
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT_EVENT, [pending[i:i + 4]
                                                 for i in range(0, len(pending), 4)])
                if event is not None:
                    seq = (self._next_id - 1) & ((1 << SEQ_BITS) - 1)
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
        if batch:
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
        if isinstance(exc, UnicodeError):
            why = (f"an event holds text that is not valid Unicode ({exc}); a plugin or an "
                   "input gave it")
        elif isinstance(exc, StorageError):
            why = str(exc)
        else:
            why = describe(exc, self.store.path, self.store.busy_timeout)
        self.failure = f"cannot checkpoint run {self.record.run_id}: {why}"
        if self.on_failure is not None:
            self.on_failure(self.failure)


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
