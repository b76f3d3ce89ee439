"""The daemon's reads of a PostgreSQL store, on its event loop: psycopg's async driver over
a pool of connections (``psycopg_pool.AsyncConnectionPool``).

What the API serves and what its watchers follow (a run, its events, a page of runs, the
server's commit position) is read here, several at once, each on a connection of the
pool: a page of runs for one client never waits behind another client's replay, nor
behind the store thread's writes (a submission, a decision, a claim), which keep the one
connection holding the daemon's run locks (``lease.py``: a session's advisory locks cannot
live in a pool). Reads hold no lock and no session state, so the pool may sit behind a
pooler in transaction mode.

Every read is one statement: a run's page row carries whether anyone owns the run and how
many of its steps succeeded, and the new events of all the runs being watched come in one
round trip. A database error is a ``StorageError`` that says what to do, as the store's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowhost.events import Event
from flowhost.problems import StorageError, UserInputError, is_utf8
from flowhost.store import codec
from flowhost.store.postgres import url as store_url
from flowhost.store.postgres.connection import CONNECT_TIMEOUT_S
from flowhost.store.postgres.errors import describe
from flowhost.store.postgres.lease import OWNED
from flowhost.store.postgres.rows import SUCCEEDED
from flowhost.store.rows import _RUN_COLUMNS, RunRecord, _record, live_status

DEFAULT_POOL_SIZE = 4  # the daemon's concurrent reads; its writes have a connection apart

# Whether a live owner holds run ``r``'s lease (``LeasedOwnership.owned``, as one expression
# over the row ``r`` of ``runs``).
_OWNED = OWNED.format(run="r.run_no")
_COLUMNS = ", ".join(f"r.{name.strip()}" for name in _RUN_COLUMNS.split(","))
_SUCCEEDED = f"coalesce(r.steps_done, ({SUCCEEDED.replace('%s', 'r.run_no')}))"
_RUN = f"SELECT {_COLUMNS}, {_OWNED} FROM runs AS r WHERE r.run_id = %(run_id)s"
EVENTS_AFTER = ("SELECT seq, type, step_id, payload FROM events WHERE run_no = %s AND seq > %s "
           "ORDER BY seq")
_WATCHED = ("SELECT e.run_no, e.seq, e.type, e.step_id, e.payload FROM events AS e JOIN "
            "unnest(%s::bigint[], %s::bigint[]) AS w(run_no, after) ON e.run_no = w.run_no "
            "AND e.seq > w.after ORDER BY e.run_no, e.seq")
_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM events WHERE run_no = %s"
DATA_VERSION = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"


async def _connect_error(url: str) -> Exception | None:
    """Why a connection to ``url`` fails, in libpq's words (a pool says only that it timed
    out); None if it works now."""
    import psycopg

    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        return exc
    await conn.close()
    return None


def _live(record: RunRecord, owned: bool) -> str:
    """The live status of a run whose owner the statement read already."""
    return live_status(record, lambda _: owned)


def page_filter(before: int | None, status: str | None, workflow_id: str | None,
                prefix: str = "") -> tuple[str, dict[str, object]]:
    """The WHERE condition of a keyset page of runs (``prefix``: the table's alias and a
    dot) and its named parameters."""
    where, params = ["true"], dict[str, object]()
    for name, condition, value in (("before", "run_no <", before), ("status", "status =", status),
                                   ("workflow_id", "workflow_id =", workflow_id)):
        if value is not None and value != "":
            where.append(f"{prefix}{condition} %({name})s")
            params[name] = value
    return " AND ".join(where), params


class AsyncReads:
    """``await reads.run(run_id)``, ``.events(record)``, ``.page(...)``… over the pool."""

    def __init__(self, pool: Any, where: str, busy_timeout: float) -> None:
        self._pool = pool  # psycopg_pool.AsyncConnectionPool, imported lazily
        self.where = where
        self.busy_timeout = busy_timeout

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float,
                   size: int = DEFAULT_POOL_SIZE) -> AsyncReads:
        """A pool of up to ``size`` connections to the (already migrated) store of
        ``url``, its first connection made: a server that cannot be reached is told now."""
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        parsed = store_url.parse(url)
        pool = AsyncConnectionPool(
            parsed.libpq, min_size=1, max_size=max(size, 1), open=False, timeout=busy_timeout,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": "flowhost-reads",
                    # (a prepared statement would stay on a pooler's server connection)
                    "prepare_threshold": None if parsed.transaction_pooler else 5})
        try:
            await pool.open(wait=True, timeout=min(max(busy_timeout, 1.0), CONNECT_TIMEOUT_S))
        except psycopg.Error as timed_out:  # psycopg_pool.PoolTimeout: none was made
            await pool.close()
            why = await _connect_error(parsed.libpq) or timed_out
            raise UserInputError(describe(why, parsed.where, busy_timeout)) from None
        return cls(pool, parsed.where, busy_timeout)

    async def close(self) -> None:
        await self._pool.close()

    async def _rows(self, sql: str, params: Sequence[object] | Mapping[str, object] = ()
                    ) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return list(await cursor.fetchall())
        except psycopg.Error as exc:  # (psycopg_pool.PoolTimeout is one)
            raise StorageError(describe(exc, self.where, self.busy_timeout)) from None

    # -- runs ----------------------------------------------------------------------------
    async def run(self, run_id: str) -> tuple[RunRecord, str] | None:
        """The run and its live status, or None when there is no such run (the store
        says why, with the runs it holds: ``PostgresStore.run``)."""
        if not is_utf8(run_id) or "\0" in run_id:
            return None
        rows = await self._rows(_RUN, {"run_id": run_id, "now": time.time()})
        if not rows:
            return None
        record = _record(rows[0][:-1])
        return record, _live(record, bool(rows[0][-1]))

    async def page(self, *, before: int | None, limit: int, status: str | None,
                   workflow_id: str | None) -> list[tuple[RunRecord, str, int]]:
        """Newest first, the runs recorded before run number ``before``: each with its live
        status and how many of its steps succeeded (``PostgresStore.runs_page``)."""
        where, params = page_filter(before, status, workflow_id, "r.")
        rows = await self._rows(
            f"SELECT {_COLUMNS}, {_OWNED}, {_SUCCEEDED} FROM runs AS r WHERE {where} "
            "ORDER BY r.run_no DESC LIMIT %(limit)s",
            {**params, "now": time.time(), "limit": max(limit, 1)})
        found = []
        for row in rows:
            record = _record(row[:-2])
            found.append((record, _live(record, bool(row[-2])), int(row[-1])))
        return found

    # -- journals ------------------------------------------------------------------------
    async def events(self, record: RunRecord, after_seq: int = 0) -> list[Event]:
        rows = await self._rows(EVENTS_AFTER, (record.run_no, max(after_seq, 0)))
        decoded = (codec.decode(record.run_id, kind, step_id, payload, seq)
                   for seq, kind, step_id, payload in rows)
        return [event for event in decoded if event is not None]

    async def watched(self, wanted: Sequence[tuple[RunRecord, int]]) -> list[list[Event]]:
        """The events of each run after its cursor, for all of them in one statement."""
        if not wanted:
            return []
        rows = await self._rows(_WATCHED, ([record.run_no for record, _ in wanted],
                                           [max(after, 0) for _, after in wanted]))
        found: dict[int, list[Event]] = {record.run_no: [] for record, _ in wanted}
        ids = {record.run_no: record.run_id for record, _ in wanted}
        for run_no, seq, kind, step_id, payload in rows:
            event = codec.decode(ids[run_no], kind, step_id, payload, seq)
            if event is not None:
                found[run_no].append(event)
        return [found[record.run_no] for record, _ in wanted]

    async def last_seq(self, record: RunRecord) -> int:
        rows = await self._rows(_LAST_SEQ, (record.run_no,))
        return int(rows[0][0])

    async def data_version(self) -> int:
        """The server's WAL insert position: it moves with every commit on the server
        (``PostgresStore.data_version``)."""
        rows = await self._rows(DATA_VERSION)
        return int(rows[0][0]) if rows else 0
