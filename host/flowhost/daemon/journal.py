"""The daemon's view of the state store: one connection on a thread of its own (the event
loop never waits on the store), and the tails of the runs being watched.

A tail follows one run's journal for all of its watchers: a ticker asks SQLite every
``TICK_S`` whether any other connection committed (``PRAGMA data_version``; on PostgreSQL
the server's WAL position, ``PostgresStore.data_version``), and only then
reads the new events of each watched run, once, for all of its watchers (both in one call
on the store's thread: a hop there and back is most of a tick's cost). Watchers read what
came before they arrived from the store itself, then the tail: every committed event, in
order, once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from flowhost.daemon import records
from flowhost.daemon.results import FinishedResults
from flowhost.events import Event, RunFinished
from flowhost.store import RunRecord, Store
from flowhost.store.checkpoint import FINAL
from flowhost.store.postgres.reads import DEFAULT_POOL_SIZE, AsyncReads

T = TypeVar("T")
# A committed event reaches its watchers within a tick (and a call on the store's thread);
# a tick that finds nothing new costs one cheap query.
TICK_S = 0.01
SWEEP_S = 1.0


class Journal:
    """``await journal.call(fn, ...)`` runs ``fn(store, ...)`` on the store's thread; the
    reads the API and its watchers make (``find``, ``events``, ``poll``, ``page``…) go,
    on PostgreSQL, over a pool of async connections instead (``AsyncReads``), several at
    once, never queued behind the thread's writes."""

    def __init__(self, state_dir: Path, busy_timeout: float = 10.0, *,
                 store_url: str | None = None, read_pool: int = DEFAULT_POOL_SIZE) -> None:
        self.state_dir = state_dir  # the runs' working directories (and SQLite's store)
        self.store_url = store_url  # a PostgreSQL store instead of state_dir's SQLite
        self.busy_timeout = busy_timeout
        self.read_pool = read_pool
        self.reads: AsyncReads | None = None
        self.finished = FinishedResults()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="flowhost-store")
        self._store: Store | None = None

    async def open(self) -> None:
        def opening() -> None:
            if self.store_url is None:
                self._store = Store.open(self.state_dir, busy_timeout=self.busy_timeout)
                return
            from flowhost.store.postgres import PostgresStore

            self._store = PostgresStore.open(  # type: ignore[assignment]
                self.store_url, busy_timeout=self.busy_timeout, state_dir=self.state_dir)
        await asyncio.get_running_loop().run_in_executor(self._pool, opening)
        if self.store_url is not None:  # (migrated by now: the store opened it first)
            self.reads = await AsyncReads.open(self.store_url, busy_timeout=self.busy_timeout,
                                               size=self.read_pool)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        def calling() -> T:
            assert self._store is not None, "the journal is not open"
            return fn(self._store, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, calling)

    # -- reads ---------------------------------------------------------------------------
    async def find(self, run_id: str) -> RunRecord:
        """The run, or ``records.NotFound``."""
        if self.reads is None:
            return await self.call(records.find, run_id)
        if (found := await self.reads.run(run_id)) is None:
            raise records.missing(run_id)
        return found[0]

    async def events(self, record: RunRecord, after_seq: int = 0) -> list[Event]:
        if self.reads is not None:
            return await self.reads.events(record, after_seq)
        return await self.call(_events, record, after_seq)

    async def status(self, record: RunRecord) -> str:
        """The run's status as stored (``running`` also after its owner died)."""
        if self.reads is None:
            return await self.call(_status, record)
        return (await self.find(record.run_id)).status

    async def last_seq(self, record: RunRecord) -> int:
        if self.reads is not None:
            return await self.reads.last_seq(record)
        return await self.call(_latest_seq, record)

    async def poll(self, wanted: list[tuple[RunRecord, int]], version: int,
                   poked: bool) -> tuple[int, list[list[Event]] | None]:
        """The store's data version now, and the new events of each wanted run when it
        changed since ``version`` (or this process wrote: ``poked``); else None."""
        if self.reads is None:
            return await self.call(_poll, wanted, version, poked)
        now = await self.reads.data_version()
        if now == version and not poked:
            return now, None
        return now, await self.reads.watched(wanted)

    async def result_json(self, run_id: str) -> bytes:
        """The run's §7 result with the daemon's additions (``records.result_json``)."""
        if (kept := self.finished.get(run_id)) is not None:
            return kept
        if self.reads is None:
            data, status = await self.call(records.result_and_status, run_id)
        else:
            if (found := await self.reads.run(run_id)) is None:
                raise records.missing(run_id)
            record, status = found
            data = records.result_document(record, await self.reads.events(record), status)
        if status in FINAL:
            self.finished.keep(run_id, data)
        return data

    async def page(self, before: int | None, limit: int, status: str,
                   workflow_id: str) -> tuple[list[records.Summary], bool]:
        """Up to ``limit`` runs before run number ``before``, newest first, and whether
        there are more (``records.page``)."""
        if self.reads is None:
            return await self.call(_page, before, limit, status, workflow_id)
        found = await self.reads.page(before=before, limit=limit + 1, status=status or None,
                                      workflow_id=workflow_id or None)
        return [records.summary(*row) for row in found[:limit]], len(found) > limit

    async def close(self) -> None:
        if self.reads is not None:
            await self.reads.close()
            self.reads = None

        def closing() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None
        with contextlib.suppress(RuntimeError):
            await asyncio.get_running_loop().run_in_executor(self._pool, closing)
        self._pool.shutdown(wait=False)


def ends_run(event: Event) -> bool:
    """A run's last event: its final ``RunFinished`` (a run that waits for a person, or
    was interrupted, goes on later)."""
    return isinstance(event, RunFinished) and event.status in FINAL


class _Tail:
    def __init__(self, record: RunRecord, base: int) -> None:
        self.record = record
        self.base = base  # the seq of the last event before ``events``
        self.events: list[Event] = []
        self.watchers = 0
        self.changed = asyncio.Event()

    @property
    def last(self) -> int:
        return self.events[-1].seq if self.events else self.base

    def after(self, cursor: int) -> list[Event]:
        """The events with ``seq > cursor`` (seqs grow; an unknown type leaves a gap)."""
        return self.events[bisect.bisect_right(self.events, cursor, key=_seq):]

    def add(self, events: list[Event]) -> None:
        if events:
            self.events += events
            self.changed.set()
            self.changed = asyncio.Event()


def _seq(event: Event) -> int:
    return event.seq


def _latest_seq(store: Store, record: RunRecord) -> int:
    return store.next_seq(record)


def _events(store: Store, record: RunRecord, after_seq: int) -> list[Event]:
    return store.events(record, after_seq)


def _status(store: Store, record: RunRecord) -> str:
    return store.run(record.run_id).status


def data_version(store: Store) -> int:
    """Changes whenever another connection commits (SQLite's own counter; PostgreSQL's
    changes with every commit on the server)."""
    version = getattr(store, "data_version", None)
    if version is not None:  # (a PostgresStore: one of the daemon's two backends)
        return int(version())
    return int(store.conn.execute("PRAGMA data_version").fetchone()[0])


def _page(store: Store, before: int | None, limit: int, status: str,
          workflow_id: str) -> tuple[list[records.Summary], bool]:
    return records.page(store, before=before, limit=limit, status=status,
                        workflow_id=workflow_id)


def _poll(store: Store, wanted: list[tuple[RunRecord, int]], version: int,
          poked: bool) -> tuple[int, list[list[Event]] | None]:
    """The store's data version now, and the new events of each wanted run when it
    changed since ``version`` (or this process wrote: ``poked``); else None."""
    now = data_version(store)
    if now == version and not poked:
        return now, None
    return now, [store.events(record, last) for record, last in wanted]


class Tails:
    """Shared followers of the runs being watched."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._tails: dict[int, _Tail] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._poked = False
        self.stopping = asyncio.Event()
        self.also_poke: list[Callable[[], None]] = []  # other followers of the journal

    def poke(self) -> None:
        """This process wrote to the journal (SQLite tells only of other connections')."""
        self._poked = True
        for poke in self.also_poke:
            poke()

    async def follow(self, record: RunRecord, after_seq: int) -> AsyncIterator[Event]:
        """Every event of the run with ``seq > after_seq``, then the new ones as they are
        committed, until the run's last. Ends early (returns) when ``stopping`` is set."""
        tail = await self._attach(record)
        try:
            cursor = after_seq
            # A run finished before the replay is read has all its events in it.
            finished = (await self.journal.status(record)) in FINAL
            for event in await self.journal.events(record, cursor):
                yield event
                cursor = event.seq
                if ends_run(event):
                    return
            if finished:
                return
            while not self.stopping.is_set():
                fresh = tail.after(cursor)
                if not fresh:
                    waits = [asyncio.ensure_future(tail.changed.wait()),
                             asyncio.ensure_future(self.stopping.wait())]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiting in waits:
                            waiting.cancel()
                    continue
                for event in fresh:
                    yield event
                    cursor = event.seq
                    if ends_run(event):
                        return
        finally:
            self._detach(tail)

    async def _attach(self, record: RunRecord) -> _Tail:
        tail = self._tails.get(record.run_no)
        if tail is None:
            base = await self.journal.last_seq(record)
            tail = self._tails.get(record.run_no)  # another watcher came meanwhile
            if tail is None:
                tail = self._tails[record.run_no] = _Tail(record, base)
                self._poked = True  # (the next poll reads it, data version or not)
        tail.watchers += 1
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())
        return tail

    def _detach(self, tail: _Tail) -> None:
        tail.watchers -= 1
        if tail.watchers <= 0 and self._tails.get(tail.record.run_no) is tail:
            del self._tails[tail.record.run_no]

    async def _tick(self) -> None:
        version = -1
        swept = time.monotonic()
        while self._tails and not self.stopping.is_set():
            # A tail attached after this snapshot misses nothing: attaching pokes, so the
            # next poll reads its events after its base whatever the data version says.
            # A commit can move PostgreSQL's WAL position a moment before others see it:
            # every SWEEP_S a poll reads regardless, so no such commit waits for long.
            tails = list(self._tails.values())
            poked, self._poked = self._poked, False
            if time.monotonic() - swept >= SWEEP_S:
                poked, swept = True, time.monotonic()
            version, found = await self.journal.poll(
                [(t.record, t.last) for t in tails], version, poked)
            if found is not None:
                for tail, events in zip(tails, found, strict=True):
                    tail.add(events)
            await asyncio.sleep(TICK_S)

    async def close(self) -> None:
        self.stopping.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
