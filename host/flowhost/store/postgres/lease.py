"""Which store executes which run, on PostgreSQL: a lease per run (owner, epoch, expiry) in
``leases``, plus, when connected directly, a session-level advisory lock held by the owning
store's connection.

- The advisory lock tells a dead owner at once: the server drops a session's locks when its
  connection ends, also when the process is killed (its socket closes), so a crashed run
  is free to resume at once, as with SQLite's process locks.
- The expiry tells an owner that is alive but stuck (frozen, cut off): while it holds a
  lease, a thread of the store renews it every third of ``lease_seconds`` over a connection
  of its own. A lease past its expiry is taken over: the new owner ends the old owner's
  session (``pg_terminate_backend``, which drops its lock and its connection), and takes
  the run with one more epoch.
- Every write of a run's journal is fenced by its epoch (``rows.insert_events``): an owner
  that lost its lease, however it goes on, writes nothing more.

Behind a pooler in transaction mode (``?pooler=transaction``) a session is not the
client's, so no lock is taken: the lease row alone says who owns a run (its
``session_bound`` is false), it is taken by one guarded upsert only when it is past its
expiry (or only a daemon's claim, or bound to a session that ended), and an owner that died
is known by its lease running out. Owners of both kinds on one database respect each
other's leases.

Advisory locks are re-entrant within a session; ownership is not (one store never executes
a run twice), hence the leases held here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from flowhost.problems import StorageError
from flowhost.store.interface import Lease
from flowhost.store.postgres.connection import Connected, connect
from flowhost.store.rows import RunRecord

log = logging.getLogger(__name__)
# The first key of flowhost's advisory locks (the second is the run_no): apart from the
# locks other programs on the same database may take.
LOCK_SPACE = 0x666C6F77  # "flow"
DEFAULT_LEASE_SECONDS = 30.0
_TAKEOVER_WAIT_S = 10.0  # for the server to end an expired owner's session
_LOCK = "pg_try_advisory_lock(%s::int4, %s::int4)"
# The row of ``pg_locks`` of a granted run lock: {space} and {run} are SQL expressions.
LOCKED = ("locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE "
          "datname = current_database()) AND classid = {space}::oid AND "
          "objid = {run}::oid AND objsubid = 2 AND granted")
_HOLDER = "SELECT pid FROM pg_locks WHERE " + LOCKED.format(space="%s", run="%s")
# Whether the lease row (``leases``, as it stands) may be taken by another owner: past its
# expiry, only a daemon's claim (its worker takes the run), or bound to a session that holds
# the run's lock no more (the lock of this store's own session does not count: it took it
# to take the lease).
_FREE = ("leases.expires_at IS NULL OR leases.expires_at < %(now)s "
         "OR leases.owner LIKE 'claim:%%' OR (leases.session_bound AND NOT EXISTS ("
         "SELECT 1 FROM pg_locks WHERE " + LOCKED.format(space=LOCK_SPACE, run="leases.run_no")
         + " AND pid <> pg_backend_pid()))")
_TAKE = ("INSERT INTO leases (run_no, owner, epoch, acquired_at, expires_at, session_bound) "
         "VALUES (%(run)s, %(owner)s, 1, %(now)s, %(until)s, %(bound)s) "
         "ON CONFLICT (run_no) DO UPDATE SET owner = EXCLUDED.owner, epoch = leases.epoch + 1, "
         "acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at, "
         f"session_bound = EXCLUDED.session_bound WHERE {_FREE} RETURNING epoch")
# Take a role when it is free or its holder's time ran out; renew it when it is the owner's
# (a row back: the owner holds it).
_TAKE_ROLE = ("INSERT INTO roles (name, owner, expires_at) VALUES (%s, %s, %s) "
              "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, "
              "expires_at = EXCLUDED.expires_at "
              "WHERE roles.owner = EXCLUDED.owner OR roles.expires_at < %s RETURNING owner")
# Whether a live owner holds run {run}'s lease, as one SQL expression (``%(now)s``: the
# time): a session holding its lock with its lease not past its expiry, or an owner behind
# a transaction pooler whose lease is not past its expiry.
OWNED = ("((EXISTS (SELECT 1 FROM pg_locks WHERE " + LOCKED.format(space=LOCK_SPACE, run="{run}")
         + ") AND coalesce((SELECT l.expires_at > %(now)s FROM leases AS l "
         "WHERE l.run_no = {run}), true)) OR EXISTS (SELECT 1 FROM leases AS l "
         "WHERE l.run_no = {run} AND NOT l.session_bound AND l.owner NOT LIKE 'claim:%%' "
         "AND l.expires_at > %(now)s))")


class LeasedOwnership(Connected):
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    _leases: dict[str, tuple[Lease, int]]  # by run id: the leases held here, their run_no
    _lost: set[str]  # run ids whose lease a renewal found taken over
    _guard: threading.Lock
    _renewer: threading.Thread | None
    _stop: threading.Event

    def _init_leases(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self._leases, self._lost, self._guard = {}, set(), threading.Lock()
        self._renewer, self._stop = None, threading.Event()

    def acquire(self, record: RunRecord, owner: str) -> Lease | None:
        """Own the run, or None while anyone (also this store) does and keeps its lease."""
        if record.run_id in self._leases:
            return None
        locked = False
        if not self.pooled:  # (behind a transaction pooler the lease row alone tells)
            row = self.one(f"SELECT {_LOCK}", (LOCK_SPACE, record.run_no))
            if not (row and row[0]) and not self._take_over(record):
                return None
            locked = True
        now = time.time()
        try:
            with self.write() as conn:
                taken = conn.execute(_TAKE, {
                    "run": record.run_no, "owner": owner, "now": now, "bound": locked,
                    "until": now + self.lease_seconds}).fetchone()
        except BaseException:
            if locked:
                self._unlock(record.run_no)
            raise
        if taken is None:  # a live owner behind a transaction pooler holds its lease
            if locked:
                self._unlock(record.run_no)
            return None
        lease = Lease(record.run_id, owner, int(taken[0]), now + self.lease_seconds)
        with self._guard:
            self._leases[record.run_id] = (lease, record.run_no)
            self._lost.discard(record.run_id)
        self._start_renewing()
        return lease

    def _take_over(self, record: RunRecord) -> bool:
        """The run's lock is held: take it if its lease expired (ending the session that
        holds it), else False."""
        row = self.one("SELECT expires_at FROM leases WHERE run_no = %s", (record.run_no,))
        if row is None or row[0] is None or row[0] > time.time():
            return False
        holders = [int(pid) for (pid,) in self.rows(_HOLDER, (LOCK_SPACE, record.run_no))]
        for pid in holders:
            log.warning("run %s: its lease expired; ending the session (pid %s) that held "
                        "it", record.run_id, pid)
            self.one("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + _TAKEOVER_WAIT_S
        while time.monotonic() < deadline:
            got = self.one(f"SELECT {_LOCK}", (LOCK_SPACE, record.run_no))
            if got and got[0]:
                return True
            time.sleep(0.02)
        return False

    def release(self, lease: Lease) -> None:
        """Let go of the run (after ``close`` too; a second time is a no-op)."""
        with self._guard:
            held = self._leases.pop(lease.run_id, None)
            self._lost.discard(lease.run_id)
        if held is None or self.conn.closed:  # (closed: the server dropped the lock)
            return
        lease_held, run_no = held
        # expired now: nobody need wait for a lease its owner gave back
        self.change("UPDATE leases SET expires_at = %s WHERE run_no = %s AND epoch = %s",
                    (time.time(), run_no, lease_held.epoch))
        self._unlock(run_no)
        # a hint to the daemons: a run left unfinished (drained, say) is theirs to claim
        self.one("SELECT pg_notify('flowhost_runs', %s)", (lease.run_id,))

    def owned(self, record: RunRecord) -> bool:
        """Whether anyone holds the run's lease now (a lease past its expiry is free)."""
        if record.run_id in self._leases:
            return True
        row = self.one(f"SELECT {OWNED.format(run='%(run)s')}",
                       {"run": record.run_no, "now": time.time()})
        return bool(row and row[0])

    def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with self.write() as conn:
            held = conn.execute(_TAKE_ROLE, (role, owner, now + seconds, now)).fetchone()
        return held is not None

    def let_go_of_role(self, role: str, owner: str) -> None:
        self.change("DELETE FROM roles WHERE name = %s AND owner = %s", (role, owner))

    def fence(self, run_id: str) -> int | None:
        """The epoch the run's writes are fenced by: this store's lease of it (None: it
        holds none, as in tests that write without owning). Raises ``LeaseLost`` once it
        was taken over, and once it ran out without a renewal (the store unreachable from
        the renewer, the process frozen): a lease this process could not renew is one
        another may take at any moment, so its writes stop here, not only at the fence."""
        if run_id in self._lost:
            raise LeaseLost(run_id)
        held = self._leases.get(run_id)
        if held is None:
            return None
        lease = held[0]
        if lease.expires_at is not None and lease.expires_at < time.time():
            raise LeaseLost(run_id, renewed=False)
        return lease.epoch

    def holds(self, record: RunRecord) -> bool:
        """Whether this store holds a lease of the run (lost or not)."""
        return record.run_id in self._leases

    def _unlock(self, run_no: int) -> None:
        if self.pooled:  # (no lock was taken)
            return
        if not self.conn.closed:  # (else the server dropped the lock with the connection)
            self.one("SELECT pg_advisory_unlock(%s::int4, %s::int4)", (LOCK_SPACE, run_no))

    # -- renewing ----------------------------------------------------------------------
    def _start_renewing(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                             name="flowhost-lease-renewer")
            self._renewer.start()

    def _renew_loop(self) -> None:
        """Every third of the lease time, push the expiry of every lease held; one that
        is no longer ours (taken over) is marked lost, and its writer stops. A renewal
        that fails (the server unreachable for a moment) is tried again at the next turn:
        the lease runs out only when none succeeds for ``lease_seconds``."""
        conn = None
        try:
            while not self._stop.wait(self.lease_seconds / 3):
                with self._guard:
                    held = list(self._leases.values())
                if not held:
                    return
                try:
                    conn = conn or connect(self.url, self.busy_timeout)
                    self._renew(conn, held)
                except Exception as exc:  # psycopg.Error, or UserInputError from connect
                    log.warning("renewing leases on %s: %s", self.where, exc)
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _renew(self, conn: Any, held: list[tuple[Lease, int]]) -> None:
        until = time.time() + self.lease_seconds
        for lease, run_no in held:
            renewed = conn.execute(
                "UPDATE leases SET expires_at = %s WHERE run_no = %s AND epoch = %s",
                (until, run_no, lease.epoch)).rowcount
            with self._guard:
                if not renewed:
                    self._lost.add(lease.run_id)
                elif self._leases.get(lease.run_id, (None, 0))[0] == lease:
                    self._leases[lease.run_id] = (replace(lease, expires_at=until), run_no)

    def close(self) -> None:
        self._stop.set()
        super().close()


class LeaseLost(StorageError):
    """This store's lease of a run was taken over (or ran out unrenewed): it writes nothing
    more of it. ``why`` says which, as the end of a sentence about the run."""

    def __init__(self, run: str, *, renewed: bool = True) -> None:
        self.why = ("this process lost its lease of the run: it expired (the process did "
                    "not renew it in time) and another one took the run over, so this one "
                    "writes nothing more of it") if renewed else (
                    "this process could not renew its lease of the run before it ran out "
                    "(the store was unreachable, or the process stopped), so another may "
                    "take the run over at any moment and this one writes nothing more of it")
        super().__init__(f"run {run}: {self.why}")
