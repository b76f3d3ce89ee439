"""The PostgreSQL rows besides the journal: what an event changes in ``runs`` and
``interventions`` (as ``flowhost.store.rows.side_tables`` does in SQLite), and the SQL the
store and its writer share."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    RunStarted,
)
from flowhost.store import codec

Conn = Any  # psycopg.Connection: imported lazily, so flowhost runs without psycopg

INSERT_EVENT = "INSERT INTO events (run_no, seq, type, step_id, payload) VALUES "
EVENT_VALUES = "(%s, %s, %s, %s, %s)"
# How many of a run's steps have succeeded (one parameter: the run_no).
SUCCEEDED = ("SELECT count(DISTINCT step_id) FROM events WHERE run_no = %s AND "
             "type = 'StepFinished' AND payload::json ->> 'status' = 'success'")


def insert_events(conn: Conn, rows: Sequence[tuple[object, ...]],
                  fence: tuple[int, int] | None = None, *, durable: bool = True,
                  lock_timeout_ms: int | None = None) -> None:
    """One INSERT statement for all ``rows`` (run_no, seq, type, step_id, payload).

    ``fence`` (run_no, epoch): insert only while the run's lease has that epoch, else raise
    ``LeaseLost``. The lease row is read ``FOR SHARE``: a takeover that commits meanwhile
    waits for this insert, or this insert sees the new epoch and writes nothing.
    ``durable=False`` (events nothing waits on: a step's start, its attempts): the commit
    does not wait for the server's disk (``synchronous_commit`` off for this statement's
    own transaction, set inside it), and the next durable commit flushes it too.
    ``lock_timeout_ms`` (behind a transaction pooler, where no session setting lasts): the
    statement goes after a ``SET LOCAL lock_timeout`` in one query string, which the server
    runs as one transaction (one round trip, as without a pooler); psycopg binds its
    parameters on the client."""
    if not rows:
        return
    values = [value for row in rows for value in row]
    conditions = [] if durable else [
        "(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"]
    if fence is not None:
        conditions.append("EXISTS (SELECT 1 FROM leases WHERE run_no = %s AND epoch = %s "
                          "FOR SHARE)")
        values += fence
    if conditions:
        typed = "(%s::bigint, %s::integer, %s::text, %s::text, %s::text)"
        sql = ("INSERT INTO events (run_no, seq, type, step_id, payload) SELECT * FROM (VALUES "
               + ", ".join([typed] + [EVENT_VALUES] * (len(rows) - 1)) + ") AS v WHERE "
               + " AND ".join(conditions))
    else:
        sql = INSERT_EVENT + ", ".join([EVENT_VALUES] * len(rows))
    if lock_timeout_ms is None:
        inserted = conn.execute(sql, values).rowcount
    else:
        import psycopg

        cursor = psycopg.ClientCursor(conn)
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}; {sql}", values)
        cursor.nextset()  # (the INSERT's result, after the SET's)
        inserted = cursor.rowcount
    if inserted != len(rows):
        from flowhost.store.postgres.lease import LeaseLost

        raise LeaseLost(str(rows[0][0]))


def side_tables(conn: Conn, run_no: int, seq: int, event: Event,
                mask: Callable[[str], str] = str) -> None:
    """What event ``seq`` of run ``run_no`` changes besides the log: the run's status, its
    interventions (their texts through ``mask``, which hides secrets)."""
    now = time.time()
    if isinstance(event, RunStarted):
        conn.execute("UPDATE runs SET status = 'running', updated_at = %s, pid = %s, "
                     "finished_at = NULL, steps_done = NULL WHERE run_no = %s",
                     (now, os.getpid(), run_no))
    elif isinstance(event, RunFinished):
        finished = event.ts if event.status != "waiting" else None
        conn.execute(f"UPDATE runs SET status = %s, updated_at = %s, finished_at = %s, "
                     f"steps_done = ({SUCCEEDED}) WHERE run_no = %s",
                     (event.status, now, finished, run_no, run_no))
    elif isinstance(event, InterventionRequested):
        conn.execute(
            "INSERT INTO interventions (run_no, seq, step_id, plugin, error, error_type, "
            "hint, attempts, requested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (run_no, seq) DO UPDATE SET step_id = EXCLUDED.step_id, "
            "plugin = EXCLUDED.plugin, error = EXCLUDED.error, "
            "error_type = EXCLUDED.error_type, hint = EXCLUDED.hint, "
            "attempts = EXCLUDED.attempts, requested_at = EXCLUDED.requested_at, "
            "action = NULL, outputs = NULL, decided_by = NULL, resolved_at = NULL",
            (run_no, seq, event.step_id, event.plugin, mask(event.error), event.error_type,
             mask(event.hint) if event.hint is not None else None, event.attempts, event.ts))
    elif isinstance(event, InterventionResolved):
        outputs = mask(codec.dumps(event.outputs)) if event.outputs is not None else None
        conn.execute(
            "UPDATE interventions SET action = %s, outputs = %s, decided_by = %s, "
            "resolved_at = %s WHERE run_no = %s AND step_id = %s AND action IS NULL",
            (event.action, outputs, event.by, event.ts, run_no, event.step_id))
