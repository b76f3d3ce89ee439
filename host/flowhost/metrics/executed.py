"""The metrics of one replica among several on a shared (PostgreSQL) store: it counts the
events of what it executed, and nothing else, so that sums over replicas count every
committed event once.

Which runs, and which of their events, are the replica's comes from what its supervisor and
its own writes noted (``flowhost.daemon.executions``), in order:

- a run handed to one of its workers is followed from its last seq at that moment (what
  came before is ``restore``d, never counted: a dead replica's finished steps, say), once
  the worker said it owns the run, up to the run's ``RunFinished`` (the worker's last
  event: it finished the run, or stopped it to wait, or was interrupted);
- what the worker commits counts exactly as far as it says (``after < seq <= upto``, the
  seqs it wrote under the run's lease: ``flowhost.daemon.reports``), as it goes and when
  it is done; the run is then let go of, or stays ``parked`` (below);
- what the daemon process writes itself (a cancel, a question's timeout, a decision it
  logs) counts here, whoever executed the run before;
- the runs that wait for a person are the reporter's (``flowhost.metrics.waiting``): it
  keeps every one of them ``parked`` (gauges: runs waiting, open questions), restored from
  the store when it starts or becomes the reporter, until another process writes to it;
  the other replicas park none.

A replica that starts owns no run (its workers died with its predecessor): it counts from
0, and restores only the waiting runs, if it is the reporter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from flowhost.daemon import executions
from flowhost.daemon.executions import Entry, Handed, LetGo, Progress, Started, Wrote
from flowhost.daemon.journal import Journal, data_version, ends_run
from flowhost.events import Event, RunFinished
from flowhost.metrics import feed as plain
from flowhost.metrics.feed import JournalFeed
from flowhost.metrics.observer import MetricsObserver
from flowhost.metrics.waiting import reporting, stop_reporting, waiting_runs
from flowhost.problems import StorageError
from flowhost.store import RunRecord, Store

log = logging.getLogger(__name__)

STOPPED = ("waiting", "interrupted")  # a worker's ends after which the run stays parked


@dataclass(eq=False, slots=True)
class _Run:
    record: RunRecord
    cursor: int  # the last seq taken in: delivered, restored or passed over
    # handed (its worker does not own it yet), executing, stopped (its worker's last event
    # came), parked (its worker let go of it, waiting), visiting (only the daemon's writes)
    state: str
    own: list[tuple[int, int]] = field(default_factory=list)  # seqs the daemon wrote
    # executing: the last seq its worker said it committed (None: it did not say, all
    # that follows is counted); what comes after it may be another owner's
    bound: int | None = None
    foreign: bool = False  # another process wrote to it after this replica's worker
    ended: bool = False  # its final RunFinished was delivered: the observer let go of it

    def owns(self, seq: int) -> bool:
        return any(after < seq <= upto for after, upto in self.own)


# (on a sweep) whether this replica reports the waiting runs, and those it takes up now
Waiting = tuple[bool, list[tuple[RunRecord, list[Event]]]]
Polled = tuple[int, list[Entry], dict[int, list[Event]], Waiting | None]


def _poll(store: Store, wanted: dict[int, tuple[RunRecord, int]], version: int,
          poked: bool, followed: set[int] | None) -> Polled | None:
    """Unless nothing was noted nor committed since ``version``: the data version now, the
    entries noted, the new events of each run they or ``wanted`` need (a run handed over:
    all of them, to restore), and with ``followed`` (a sweep) the waiting runs to take up.
    The entries are taken only once all is read."""
    entries = executions.pending(store)
    now = data_version(store)
    if not entries and now == version and not poked:
        return None
    reads = dict(wanted)
    for entry in entries:
        number = entry.record.run_no
        if isinstance(entry, Handed):
            reads[number] = (entry.record, 0)
        elif isinstance(entry, Wrote) and number not in reads:
            reads[number] = (entry.record, entry.after)
    events = {number: store.events(record, cursor)
              for number, (record, cursor) in reads.items()}
    waiting = None if followed is None else _waiting(store, followed | set(reads))
    executions.consumed(store, len(entries))
    return now, entries, events, waiting


def _waiting(store: Store, followed: set[int]) -> Waiting:
    role = reporting(store)
    return role, waiting_runs(store, followed) if role else []


def _keep(store: Store) -> tuple[int, Waiting]:
    executions.keep(store)
    return data_version(store), _waiting(store, set())


class ExecutedFeed(JournalFeed):
    """Delivers to ``observer``, once, every committed event of what this daemon executed
    (see the module's docstring)."""

    def __init__(self, journal: Journal, observer: MetricsObserver, *,
                 tick_s: float = plain.TICK_S) -> None:
        super().__init__(journal, observer, tick_s=tick_s)
        self._runs: dict[int, _Run] = {}
        self.reporter = False  # (``flowhost.metrics.waiting.reporting``)

    async def close(self) -> None:
        """Stop following; a reporter gives its role back, so another replica takes it up
        at its next sweep instead of when the role runs out."""
        await super().close()
        if self.reporter:
            try:
                await self.journal.call(stop_reporting)
            except StorageError as exc:  # (it runs out all the same)
                log.warning("flowhost serve: metrics: giving the reporter role back: %s", exc)
            self.reporter = False

    async def start(self) -> None:
        """Start noting and following, the waiting runs restored if this replica reports
        them; before the supervisor hands any run over."""
        self._version, waiting = await self.journal.call(_keep)
        self._report_waiting(waiting)
        self._answered = time.monotonic()
        self._task = asyncio.ensure_future(self._tick())

    async def _step(self) -> None:
        poked, sweep = self._sweeping()
        # (a parked run has no worker writing to it: read on a poke or every QUIET_S)
        wanted = {number: (run.record, run.cursor) for number, run in self._runs.items()
                  if sweep or run.state != "parked" or run.own}
        found = await self._read(poked, sweep, _poll, wanted, self._version, sweep,
                                 set(self._runs) if sweep else None)
        if found is None:
            return
        self._version, entries, events, waiting = found
        for entry in entries:
            self._take(entry, events.get(entry.record.run_no, []))
        for number, run in list(self._runs.items()):
            if number in events:
                self._scan(run, events[number])
            if run.ended or (run.foreign and run.state == "parked"):
                self._drop(run)
        if waiting is not None:
            self._report_waiting(waiting)

    def _report_waiting(self, waiting: Waiting) -> None:
        """Take up the waiting runs no one follows here, if this replica reports them; let
        go of the parked ones if it no longer does."""
        self.reporter, found = waiting
        if not self.reporter:
            for run in [r for r in self._runs.values() if r.state == "parked"]:
                self._drop(run)
        for record, events in found:
            if record.run_no not in self._runs:
                self.observer.restore(events)
                cursor = events[-1].seq if events else 0
                self._runs[record.run_no] = _Run(record, cursor, "parked")

    # -- entries ---------------------------------------------------------------------------
    def _take(self, entry: Entry, events: list[Event]) -> None:
        run = self._runs.get(entry.record.run_no)
        if isinstance(entry, Handed):
            if run is not None:  # parked here, say: the daemon's writes first, then afresh
                self._scan(run, events, upto=entry.after)
                self._drop(run)
            run = self._runs[entry.record.run_no] = _Run(entry.record, entry.after, "handed")
            self.observer.restore(e for e in events if e.seq <= entry.after)
        elif run is None:
            if isinstance(entry, Wrote):  # a run not followed here: its writes alone
                self._visit(entry, events)
        elif isinstance(entry, Started):
            if run.state == "handed":
                self._passed(run, events, entry.after)
                run.state, run.bound = "executing", entry.after
        elif isinstance(entry, Progress):
            if run.bound is not None:
                run.bound = max(run.bound, entry.upto)
        elif isinstance(entry, LetGo):
            self._let_go(run, entry, events)
        else:
            run.own.append((entry.after, entry.upto))

    def _let_go(self, run: _Run, entry: LetGo, events: list[Event]) -> None:
        """Its worker is done with it: take in what the worker committed, then keep the
        run parked (it waits, or was interrupted) or let go of it."""
        if run.state == "handed":  # the worker never started it (busy, done, or it died)
            if entry.after is not None:  # it took the lease: what it wrote is its own
                self._passed(run, events, entry.after)
                run.own.append((entry.after, entry.upto))
            run.state = "visiting"
        run.bound = None  # (``upto`` bounds it now)
        self._scan(run, events, upto=entry.upto)
        if run.ended:
            self._drop(run)
        elif (entry.status in STOPPED and run.state == "stopped" and not run.foreign
              and self.reporter):
            run.state, run.own = "parked", []
        else:
            self._drop(run)

    def _visit(self, entry: Wrote, events: list[Event]) -> None:
        run = _Run(entry.record, entry.after, "visiting", [(entry.after, entry.upto)])
        self._scan(run, events, upto=entry.upto)
        self._forget(run)

    def _passed(self, run: _Run, events: list[Event], after: int | None) -> None:
        """What another process committed between the hand-off and the moment the worker
        took the lease (seqs up to ``after``) is not this replica's: restored, not
        counted."""
        if after is None or after <= run.cursor:
            return
        self.observer.restore(e for e in events if run.cursor < e.seq <= after)
        run.cursor = after

    # -- events ----------------------------------------------------------------------------
    def _scan(self, run: _Run, events: list[Event], upto: int | None = None) -> None:
        """Take in the run's events after its cursor (up to ``upto``): the daemon's own
        writes, and its worker's while it executes; those of anyone else are passed over."""
        for event in events:
            if event.seq <= run.cursor:
                continue
            if run.ended or (upto is not None and event.seq > upto):
                return
            if run.owns(event.seq) or run.state == "executing":
                if not run.owns(event.seq) and run.bound is not None \
                        and event.seq > run.bound:
                    break  # its worker has not said it committed it (yet)
                self._deliver(event)
                run.ended = ends_run(event)
                if run.state == "executing" and isinstance(event, RunFinished):
                    run.state = "stopped"
            elif run.state == "handed":  # its worker's, once it says it owns the run
                break
            else:
                run.foreign = True
            run.cursor = event.seq
        run.own = [(after, upto) for after, upto in run.own if upto > run.cursor]

    def _drop(self, run: _Run) -> None:
        self._runs.pop(run.record.run_no, None)
        self._forget(run)

    def _forget(self, run: _Run) -> None:
        """The observer lets go of what it holds of the run, counting nothing."""
        if not run.ended:
            self.observer.forget(run.record.run_id, run.record.workflow_id)
            run.ended = True
