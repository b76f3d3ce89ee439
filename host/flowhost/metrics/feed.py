"""The daemon's metrics: one registry, fed from the committed journal of every run the
daemon supervises (its workers are other processes; what they commit is what counts).

A ticker asks SQLite every ``TICK_S`` whether another connection committed (``PRAGMA
data_version``; the daemon's own writes ``poke`` it), and only then reads, on the store's
thread, the new events of each run it follows, after that run's cursor (its last seq
delivered): each committed event reaches the observer exactly once in the daemon's life.

At start the daemon's unfinished runs are read whole and ``restore``d (gauges, open
questions, attempts in flight) without being counted: a restarted daemon's counters start
at 0, as Prometheus expects of a restarted process, and never count a run's past twice.
Runs created later are followed from their first event. A run is let go after its final
``RunFinished``; one that stopped without ending (waiting, interrupted) is read less often.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flowhost.daemon.journal import Journal, data_version, ends_run
from flowhost.daemon.records import is_daemon_run
from flowhost.events import Event, RunFinished
from flowhost.metrics.observer import MetricsObserver
from flowhost.observers import Guarded, Observer
from flowhost.store import RunRecord, Store
from flowhost.store.db import UNFINISHED

log = logging.getLogger("flowhost.daemon")
T = TypeVar("T")
TICK_S = 0.2  # metrics lag the journal by at most this (a scrape is every few seconds)
STALE_S = 10.0  # the store has not answered for this long: not ready
# A run that stopped (waiting for a person, interrupted) has no worker writing to it: it is
# read on a poke (the daemon wrote: an answer, a cancel) or every QUIET_S, not every tick,
# so a tick costs what the executing runs cost, however many runs wait.
QUIET_S = 2.0
_PAGE = 100

Wanted = Callable[[Store, RunRecord], bool]


def _newer(store: Store, newest: int) -> list[RunRecord]:
    """The runs recorded after run number ``newest``, oldest first."""
    top = store.runs_page(limit=1)  # most polls find none: one row read, not a page
    if not top or top[0].run_no <= newest:
        return []
    found: list[RunRecord] = []
    before: int | None = None
    while True:
        page = store.runs_page(before=before, limit=min(top[0].run_no - newest, _PAGE))
        fresh = [record for record in page if record.run_no > newest]
        found += fresh
        if len(fresh) < len(page) or len(page) < _PAGE:
            return found[::-1]
        before = page[-1].run_no


def _start(store: Store, wanted: Wanted) -> tuple[int, int, list[tuple[RunRecord, list[Event]]]]:
    """The data version, the newest run number, and each unfinished run with its events."""
    version = data_version(store)
    newest = store.runs_page(limit=1)
    unfinished = [(record, store.events(record))
                  for record in reversed(store.runs(statuses=UNFINISHED))
                  if wanted(store, record)]
    return version, newest[0].run_no if newest else 0, unfinished


def _poll(store: Store, followed: list[tuple[RunRecord, int]], newest: int, version: int,
          poked: bool, wanted: Wanted
          ) -> tuple[int, int, list[RunRecord], list[list[Event]]] | None:
    """Unless nothing was committed since ``version``: the data version now, the newest
    run number now, the runs recorded since ``newest`` that are ``wanted`` (the daemon's),
    and the new events of each followed run, then of each of those."""
    now = data_version(store)
    if now == version and not poked:
        return None
    fresh = _newer(store, newest)
    mine = [record for record in fresh if wanted(store, record)]
    events = [store.events(record, cursor) for record, cursor in followed]
    events += [store.events(record) for record in mine]
    return now, fresh[-1].run_no if fresh else newest, mine, events


class JournalFeed:
    """Delivers every committed event of the daemon's runs to ``observer``, once."""

    def __init__(self, journal: Journal, observer: MetricsObserver, *,
                 wanted: Wanted = is_daemon_run, tick_s: float = TICK_S) -> None:
        self.journal = journal
        self.observer = observer
        self.wanted = wanted
        self.tick_s = tick_s
        self._deliver: Observer = Guarded(observer, self._detached)
        self._followed: dict[int, tuple[RunRecord, int]] = {}  # run_no: record, last seq
        self._quiet: set[int] = set()  # followed runs whose last event stopped them
        self._swept = time.monotonic()  # when the quiet ones were last read
        self._newest = 0
        self._version = -1
        self._poked = False
        self._task: asyncio.Task[None] | None = None
        self._polling = asyncio.Lock()
        self.problem: str | None = None  # why the last poll failed
        self._answered = time.monotonic()  # when the store last answered a poll

    async def start(self) -> None:
        """Restore the unfinished runs and start following; before any worker starts."""
        self._version, self._newest, unfinished = await self.journal.call(
            _start, self.wanted)
        for record, events in unfinished:
            self.observer.restore(events)
            self._followed[record.run_no] = (record, events[-1].seq if events else 0)
            if events and isinstance(events[-1], RunFinished):
                self._quiet.add(record.run_no)
        self._answered = time.monotonic()
        self._task = asyncio.ensure_future(self._tick())

    def poke(self) -> None:
        """The daemon itself wrote to the journal (SQLite tells only of others' commits)."""
        self._poked = True

    def unready(self) -> str | None:
        """Why the store cannot be counted on now, or None."""
        silent = time.monotonic() - self._answered
        if self.problem is not None:
            return f"the state store cannot be read: {self.problem}"
        if silent > STALE_S:
            return f"the state store has not answered for {silent:.0f}s"
        return None

    def _follow(self, record: RunRecord, events: list[Event]) -> None:
        cursor = self._followed.get(record.run_no, (record, 0))[1]
        for event in events:
            self._deliver(event)
            cursor = event.seq
            if ends_run(event):
                self._followed.pop(record.run_no, None)
                self._quiet.discard(record.run_no)
                return
        self._followed[record.run_no] = (record, cursor)
        if events:
            if isinstance(events[-1], RunFinished):
                self._quiet.add(record.run_no)
            else:
                self._quiet.discard(record.run_no)

    async def _tick(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.tick_s)

    async def step(self) -> None:
        """One poll: deliver what was committed since the last one."""
        async with self._polling:  # one at a time: each starts from where the last ended
            await self._step()

    def _sweeping(self) -> tuple[bool, bool]:
        """Whether the daemon wrote since the last poll, and whether this poll reads the
        quiet runs too (it wrote, or they were last read ``QUIET_S`` ago)."""
        poked, self._poked = self._poked, False
        return poked, poked or time.monotonic() - self._swept >= QUIET_S

    async def _read(self, poked: bool, sweep: bool, fn: Callable[..., T],
                    *args: Any) -> T | None:
        """``fn(store, *args)`` on the store's thread; None when the store failed (the
        daemon is then not ready, and the next poll reads all that this one would have)."""
        try:
            found = await self.journal.call(fn, *args)
        except Exception as exc:  # the store is locked, gone, or its thread is stopped
            if self.problem is None:
                log.error("flowhost serve: metrics: cannot read the state store: %s", exc)
            self.problem = f"{type(exc).__name__}: {exc}"
            self._poked = self._poked or poked  # read it all next time
            return None
        self.problem = None
        self._answered = time.monotonic()
        if sweep:
            self._swept = self._answered
        return found

    async def _step(self) -> None:
        poked, sweep = self._sweeping()
        quiet = () if sweep else self._quiet
        followed = [entry for run_no, entry in self._followed.items() if run_no not in quiet]
        found = await self._read(poked, sweep, _poll, followed, self._newest,
                                 self._version, sweep, self.wanted)
        if found is None:
            return
        self._version, self._newest, mine, events = found
        for record, new in zip([record for record, _ in followed] + mine, events,
                               strict=True):
            self._follow(record, new)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _detached(self, message: str) -> None:
        log.error("flowhost serve: metrics: %s", message)
