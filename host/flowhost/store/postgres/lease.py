"""Which store executes which run, on PostgreSQL: a session-level advisory lock per run,
held by the owning store's connection, and one more epoch in ``leases`` per new owner.

The server drops a session's advisory locks when its connection ends, also when the process
is killed (its socket closes), so a crashed run is free at once, as with SQLite's process
locks. And the journal writer writes on that same connection: should the connection be lost,
so is the lock, and every later write fails instead of racing a new owner.

Advisory locks are re-entrant within a session; ownership is not (one store never executes
a run twice), hence the set of runs held here.
"""

from __future__ import annotations

import time

from flowhost.store.interface import Lease
from flowhost.store.postgres.connection import Connected
from flowhost.store.rows import RunRecord

# The first key of flowhost's advisory locks (the second is the run_no): apart from the
# locks other programs on the same database may take.
LOCK_SPACE = 0x666C6F77  # "flow"


class AdvisoryOwnership(Connected):
    _leased: dict[str, int]  # run id -> run_no, of the leases held by this store

    def acquire(self, record: RunRecord, owner: str) -> Lease | None:
        """Own the run, or None while anyone (also this store) does."""
        if record.run_no in self._leased.values():
            return None
        row = self.one("SELECT pg_try_advisory_lock(%s::int4, %s::int4)",
                       (LOCK_SPACE, record.run_no))
        if row is None or not row[0]:
            return None
        try:
            with self.write() as conn:
                epoch = conn.execute(
                    "INSERT INTO leases (run_no, owner, epoch, acquired_at) "
                    "VALUES (%s, %s, 1, %s) ON CONFLICT (run_no) DO UPDATE SET "
                    "owner = EXCLUDED.owner, epoch = leases.epoch + 1, "
                    "acquired_at = EXCLUDED.acquired_at, expires_at = NULL RETURNING epoch",
                    (record.run_no, owner, time.time())).fetchone()[0]
        except BaseException:
            self._unlock(record.run_no)
            raise
        self._leased[record.run_id] = record.run_no
        return Lease(record.run_id, owner, int(epoch))

    def release(self, lease: Lease) -> None:
        """Let go of the run (after ``close`` too; a second time is a no-op)."""
        run_no = self._leased.pop(lease.run_id, None)
        if run_no is not None:
            self._unlock(run_no)

    def owned(self, record: RunRecord) -> bool:
        if record.run_no in self._leased.values():
            return True
        row = self.one("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                       "AND database = (SELECT oid FROM pg_database "
                       "WHERE datname = current_database()) AND classid = %s::oid "
                       "AND objid = %s::oid AND objsubid = 2 AND granted)",
                       (LOCK_SPACE, record.run_no))
        return bool(row and row[0])

    def _unlock(self, run_no: int) -> None:
        if self.conn.closed:  # the server dropped the lock with the connection
            return
        self.one("SELECT pg_advisory_unlock(%s::int4, %s::int4)", (LOCK_SPACE, run_no))
