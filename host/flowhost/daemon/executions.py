"""What this daemon process does with the runs of a shared store, noted in the order it
does it, for its metrics (``flowhost.metrics.executed``). Several replicas on one
PostgreSQL store each count the events of what they executed, so that a sum over replicas
counts every committed event once: where a run's workdir lies says nothing of that.

Every entry is noted on the store's thread, as the daemon's every store call is, so the
entries fall in order with the daemon's own writes and with the seqs they read:

- ``Handed``: the supervisor hands the run to one of its workers; ``after``, the run's last
  seq then (what came before, a dead replica's finished steps say, is not this one's);
- ``Started``: the worker owns the run (it said ``started``); ``after``, the run's last seq
  when it took the lease, as the worker read it under the lease: what the run's earlier
  owner still committed after the hand-off is at or before it, and everything after it is
  the worker's (before that the run may still be another process's: the worker may
  answer ``busy``);
- ``Progress``: while it executes, the worker committed all up to ``upto`` (what it says
  every moment): a replica counts its worker's events as far as that, never further (a
  worker frozen past its lease, whose run another replica took over, says no more);
- ``LetGo``: the worker is done with it (its ``status``, or ``died``); ``upto``, the last
  seq the worker committed, as it said (the run's next owner may have written after it
  by the time the daemon reads anything), or when it could not say (it died, its
  checkpoint failed) the run's last seq then; ``after``, as in ``Started``, when the
  worker took the lease without starting the run (it had finished: what it wrote, the
  answers it logged, say, is still its own);
- ``Wrote``: the daemon process wrote to the run's journal itself, under its own lease (a
  cancel, a question's timeout applied, a decision logged): seqs ``after < seq <= upto``.

Entries are kept only for a store whose feed asked (``keep``): a daemon on SQLite counts
every run of its state dir instead (``flowhost.metrics.feed``), and keeps none.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from flowhost.store import RunRecord


@dataclass(frozen=True, slots=True)
class Handed:
    record: RunRecord
    after: int


@dataclass(frozen=True, slots=True)
class Started:
    record: RunRecord
    after: int | None = None  # None: the worker did not say (counted from the hand-off)


@dataclass(frozen=True, slots=True)
class Progress:
    record: RunRecord
    upto: int


@dataclass(frozen=True, slots=True)
class LetGo:
    record: RunRecord
    status: str
    upto: int
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Wrote:
    record: RunRecord
    after: int
    upto: int


Entry = Handed | Started | Progress | LetGo | Wrote


@dataclass(slots=True)
class _Kept:
    entries: list[Entry] = field(default_factory=list)
    handed: dict[str, RunRecord] = field(default_factory=dict)  # run id: record, until let go


# By store object: the daemon has one store (its journal's), and the functions here get it
# as every function called on the store's thread does; a store that goes keeps nothing.
_kept: weakref.WeakKeyDictionary[Any, _Kept] = weakref.WeakKeyDictionary()


def keep(store: Any) -> None:
    """Note entries for ``store`` from now on."""
    _kept.setdefault(store, _Kept())


def pending(store: Any) -> list[Entry]:
    """The entries noted and not yet ``consumed``, oldest first."""
    kept = _kept.get(store)
    return list(kept.entries) if kept is not None else []


def consumed(store: Any, count: int) -> None:
    """The first ``count`` pending entries were taken in (only once the reads that go with
    them succeeded: a poll that fails leaves them for the next)."""
    kept = _kept.get(store)
    if kept is not None:
        del kept.entries[:count]


def handed(store: Any, run_id: str) -> None:
    kept = _kept.get(store)
    if kept is None:
        return
    record = store.run(run_id)
    kept.handed[run_id] = record
    kept.entries.append(Handed(record, store.next_seq(record)))


def started(store: Any, run_id: str, after: int | None = None) -> None:
    kept = _kept.get(store)
    record = kept.handed.get(run_id) if kept is not None else None
    if kept is not None and record is not None:
        kept.entries.append(Started(record, after))


def committed(store: Any, run_id: str, upto: int) -> None:
    kept = _kept.get(store)
    record = kept.handed.get(run_id) if kept is not None else None
    if kept is not None and record is not None:
        kept.entries.append(Progress(record, upto))


def let_go(store: Any, run_id: str, status: str, after: int | None = None,
           upto: int | None = None) -> None:
    kept = _kept.get(store)
    record = kept.handed.pop(run_id, None) if kept is not None else None
    if kept is not None and record is not None:
        last = store.next_seq(record) if upto is None else upto
        kept.entries.append(LetGo(record, status, last, after))


def writing(store: Any, record: RunRecord) -> int | None:
    """Before the daemon writes to the run under its lease: its last seq (None: nothing is
    kept, so ``wrote`` need not read anything)."""
    return store.next_seq(record) if store in _kept else None


def wrote(store: Any, record: RunRecord, after: int | None) -> None:
    """After the daemon wrote to the run, still under its lease (no one else wrote
    meanwhile): note what it wrote, if anything."""
    kept = _kept.get(store)
    if kept is None or after is None:
        return
    upto = store.next_seq(record)
    if upto > after:
        kept.entries.append(Wrote(record, after, upto))
