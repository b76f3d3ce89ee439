"""Claiming runs for several daemons on one PostgreSQL store (Airflow's HA scheduler does the
same with ``SELECT … FOR UPDATE SKIP LOCKED``): each daemon asks, about once a second, for
as many runs as it has free slots, and gets runs no other daemon is claiming at that moment
nor executing.

A claim is a short reservation in ``leases`` (owner ``claim:<server pid of the claiming
session>:…``, an expiry, the epoch left as it was): it keeps other daemons off the run while
this one's worker starts; the worker then takes the lease for real (``lease.py``: the
session lock, one more epoch). Claimable: a run submitted to a daemon (it has a
``submissions`` row) that is queued, running or interrupted, and whose lease is absent,
expired, or held by an owner whose session ended (a daemon that died after claiming: its
session is gone from ``pg_stat_activity``; a worker that died: its session lock is gone).
A run claimed twice all the same (a reservation that expired while a worker started) is
harmless: one worker takes the lease, the other is told the run is busy. Behind a pooler in
transaction mode the claiming session is the pooler's, not the daemon's: there a claim, and
a worker's lease, are known to be dead only by their expiry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from flowhost.store.postgres.connection import CONNECT_TIMEOUT_S
from flowhost.store.postgres.lease import LOCK_SPACE, LOCKED, LeasedOwnership
from flowhost.store.rows import _RUN_COLUMNS, RunRecord, _record

log = logging.getLogger(__name__)
CLAIM_SECONDS = 30.0  # how long a reservation keeps others off while a worker starts
CHANNEL = "flowhost_runs"  # NOTIFY'd when a run becomes claimable (a wake-up hint)
_CLAIM = f"""
WITH claimable AS (
    SELECT r.run_no FROM runs AS r
    JOIN submissions AS s ON s.run_no = r.run_no
    LEFT JOIN leases AS l ON l.run_no = r.run_no
    WHERE r.status IN ('queued', 'running', 'interrupted')
      AND NOT (r.run_id = ANY(%(exclude)s))
      AND (l.run_no IS NULL OR l.expires_at IS NULL OR l.expires_at < %(now)s
           OR (l.session_bound AND l.owner LIKE 'claim:%%' AND NOT EXISTS (
               SELECT 1 FROM pg_stat_activity
               WHERE pid = split_part(l.owner, ':', 2)::integer))
           OR (l.session_bound AND l.owner NOT LIKE 'claim:%%' AND NOT EXISTS (
               SELECT 1 FROM pg_locks WHERE {LOCKED.format(space=LOCK_SPACE, run="r.run_no")})))
    ORDER BY r.run_no
    LIMIT %(limit)s
    FOR UPDATE OF r SKIP LOCKED
), reserved AS (
    INSERT INTO leases (run_no, owner, epoch, acquired_at, expires_at, session_bound)
    SELECT run_no, 'claim:' || pg_backend_pid() || ':' || %(owner)s, 0, %(now)s, %(until)s,
        %(bound)s
    FROM claimable
    ON CONFLICT (run_no) DO UPDATE SET owner = EXCLUDED.owner,
        acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at,
        session_bound = EXCLUDED.session_bound
    RETURNING run_no
)
SELECT {", ".join(f"r.{c.strip()}" for c in _RUN_COLUMNS.split(","))}
FROM runs AS r JOIN reserved USING (run_no) ORDER BY r.run_no
"""


class Claiming(LeasedOwnership):
    def claim(self, owner: str, limit: int, exclude: Iterable[str] = ()) -> list[RunRecord]:
        """Reserve up to ``limit`` claimable runs for ``owner`` (not those of ``exclude``,
        which it has already), oldest first."""
        if limit < 1:
            return []
        now = time.time()
        with self.write() as conn:
            rows = conn.execute(_CLAIM, {"exclude": list(exclude), "now": now,
                                         "limit": limit, "owner": owner,
                                         "bound": not self.pooled,
                                         "until": now + CLAIM_SECONDS}).fetchall()
        return [_record(row) for row in rows]


class Wakeups:
    """``LISTEN flowhost_runs`` on a connection of its own, in a thread: ``wake()`` (which
    must be thread-safe) is called when a run was submitted or let go of, so a daemon claims
    it at once instead of at its next poll. Only a hint: polling goes on beside it, and
    where notifications do not arrive (a pooler in transaction mode drops LISTEN) nothing
    is lost but the wait for the next poll."""

    def __init__(self, url: str, wake: Callable[[], None]) -> None:
        self.url = url
        self.wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True,
                                        name="flowhost-wakeups")

    def start(self) -> None:
        from flowhost.store.postgres.url import PostgresUrl

        location = PostgresUrl(url=self.url)
        if location.transaction_pooler:  # LISTEN would hold no session: polling alone
            log.info("%s is behind a pooler in transaction mode: runs are claimed by "
                     "polling alone", location.where)
            return
        self.url = location.libpq
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wake()
            except psycopg.Error as exc:  # the server went away: polling still claims
                log.debug("listening for wake-ups on %s: %s", self.url, exc)
                self._stop.wait(1.0)
