"""Which replica on a shared (PostgreSQL) store reports the runs that wait for a person.

A run parked waiting for an answer has no owner: no worker executes it, and the replica
whose worker left it waiting may be gone (restarted, scaled down, killed). So that a sum
over replicas of ``flowhost_runs_waiting``, ``flowhost_interventions_waiting`` (and the max
of ``flowhost_intervention_oldest_wait_seconds``) tells every waiting run once, one
replica reports them all: the **reporter**, the one whose store session holds flowhost's
reporter lock (a session-level advisory lock: the first replica that asks takes it, the
server drops it with the session of a replica that ends, and the next one that asks, at
its next sweep, takes it and restores every waiting run from the store). The others report
none: a run one of their workers left waiting is let go of at once (the reporter takes it
up at its next sweep). Runs that wait while their other branches execute are counted by
the replica executing them, as any executing run.

Behind a pooler in transaction mode a session is not the daemon's and no lock can tell: then
there is no reporter, and each replica reports the runs its workers left waiting, while it
lives (``reporting`` answers None). A store that is not shared (SQLite, in tests) has its
one daemon as its reporter.
"""

from __future__ import annotations

from typing import Any

from flowhost.events import Event
from flowhost.store import RunRecord

# flowhost's advisory locks are (LOCK_SPACE, run_no) with run numbers from 1: (LOCK_SPACE, 0)
# is no run's
_LOCK_SPACE = 0x666C6F77  # as flowhost.store.postgres.lease.LOCK_SPACE
_REPORTER = 0
# Held by this session already (advisory locks are re-entrant: asking again while holding
# would stack them), else taken if free. (CASE: evaluated in this order.)
_HOLD = ("SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND "
         "pid = pg_backend_pid() AND classid = %s::oid AND objid = %s::oid AND objsubid = 2 "
         "AND granted) THEN true ELSE pg_try_advisory_lock(%s::int4, %s::int4) END")


def reporting(store: Any) -> bool | None:
    """Whether this daemon reports the waiting runs (True: it holds the reporter lock, or
    its store is its own; False: another replica does; None: no replica can tell)."""
    one = getattr(store, "one", None)
    if one is None:  # not a shared store
        return True
    if getattr(store, "pooled", False):
        return None
    with store.failing_as_storage():
        row = one(_HOLD, (_LOCK_SPACE, _REPORTER, _LOCK_SPACE, _REPORTER))
    return bool(row and row[0])


def waiting_runs(store: Any, followed: set[int]) -> list[tuple[RunRecord, list[Event]]]:
    """The runs waiting for a person that ``followed`` does not hold, with their events."""
    found: list[tuple[RunRecord, list[Event]]] = []
    for record in reversed(store.runs(statuses=("waiting",))):
        if record.run_no not in followed:
            found.append((record, store.events(record)))
    return found
