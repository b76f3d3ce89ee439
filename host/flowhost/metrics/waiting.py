"""Which replica on a shared (PostgreSQL) store reports the runs that wait for a person.

A run parked waiting for an answer has no owner: no worker executes it, and the replica
whose worker left it waiting may be gone (restarted, scaled down, killed). So that a sum
over replicas of ``flowhost_runs_waiting``, ``flowhost_interventions_waiting`` (and the max
of ``flowhost_intervention_oldest_wait_seconds``) tells every waiting run once, one
replica reports them all: the **reporter**, the daemon that holds the store's reporter role
(``StateStore.hold_role``: a row with an expiry, so it works behind a transaction pooler
too). Each replica asks at every sweep; the holder renews it so, and one that stops gives
it back (a replica that died keeps it until it runs out, ``ROLE_SECONDS``); the next to
ask takes it and restores every waiting run from the store. The others report none: a run
one of their workers left waiting is let go of at once (the reporter takes it up at its next
sweep). Runs that wait while their other branches execute are counted by the replica
executing them, as any executing run. A store of one daemon (SQLite) has it as reporter.
"""

from __future__ import annotations

import os
import socket

from flowhost.events import Event
from flowhost.store import RunRecord
from flowhost.store.interface import StateStore

ROLE = "waiting-runs-reporter"
# Five sweeps of the feed (``flowhost.metrics.feed.QUIET_S``, 2 s): a reporter that died is
# replaced within this, one that misses a sweep or two is not.
ROLE_SECONDS = 10.0


def reporter_id() -> str:
    """This daemon, as the holder of a role."""
    return f"{socket.gethostname()}:{os.getpid()}"


def reporting(store: StateStore) -> bool:
    """Whether this daemon reports the waiting runs now (it holds, or just took, the role)."""
    return store.hold_role(ROLE, reporter_id(), ROLE_SECONDS)


def stop_reporting(store: StateStore) -> None:
    """Give the role back (a daemon that stops): the next replica's sweep takes it."""
    store.let_go_of_role(ROLE, reporter_id())


def waiting_runs(store: StateStore, followed: set[int]) -> list[tuple[RunRecord, list[Event]]]:
    """The runs waiting for a person that ``followed`` does not hold, oldest first, with
    their events (only those runs' records and journals are read)."""
    found: list[tuple[RunRecord, list[Event]]] = []
    for run_no, run_id in reversed(store.run_ids(statuses=("waiting",))):
        if run_no not in followed:
            record = store.run(run_id)
            found.append((record, store.events(record)))
    return found
