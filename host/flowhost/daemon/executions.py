"""What this daemon process does with the runs of a shared store, noted in the order it
does it, for its metrics (``flowhost.metrics.executed``). Several replicas on one
PostgreSQL store each count the events of what they executed, so that a sum over replicas
counts every committed event once: where a run's workdir lies says nothing of that.

Every entry is noted on the store's thread, as the daemon's every store call is, so the
entries fall in order with the daemon's own writes and with the seqs they read:

- ``Handed``: the supervisor hands the run to one of its workers; ``after``, the run's last
  seq then (what came before, a dead replica's finished steps say, is not this one's);
- ``Started``: the worker owns the run (it said ``started``): what it commits from then on
  is this replica's (before that the run may still be another process's: the worker
  may answer ``busy``);
- ``LetGo``: the worker is done with it (its ``status``, or ``died``); ``upto``, the run's
  last seq then: what that worker committed is at or before it;
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


@dataclass(frozen=True, slots=True)
class LetGo:
    record: RunRecord
    status: str
    upto: int


@dataclass(frozen=True, slots=True)
class Wrote:
    record: RunRecord
    after: int
    upto: int


Entry = Handed | Started | LetGo | Wrote


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


def started(store: Any, run_id: str) -> None:
    kept = _kept.get(store)
    record = kept.handed.get(run_id) if kept is not None else None
    if kept is not None and record is not None:
        kept.entries.append(Started(record))


def let_go(store: Any, run_id: str, status: str) -> None:
    kept = _kept.get(store)
    record = kept.handed.pop(run_id, None) if kept is not None else None
    if kept is not None and record is not None:
        kept.entries.append(LetGo(record, status, store.next_seq(record)))


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
