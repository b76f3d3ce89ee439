"""The PostgreSQL store's schema, as its own ordered list of migrations (the SQLite ones in
``flowhost.store.schema`` stay SQLite's: the two evolve apart, each numbered from 1).

``flowhost_schema`` holds one row per applied migration; a database whose version is newer
than the last migration here was written by a newer flowhost and is refused, never touched.
Migrations run in one transaction under a transaction-level advisory lock, so several
processes starting at once on a new database migrate it once.

Layout choices:
- ``events`` is keyed by ``(run_no, seq)``: a run's journal is one contiguous range of the
  primary key, so the checkpoint writes no secondary index;
- payloads are JSON text (``json``, not ``jsonb``: the text is what flowhost wrote, byte for
  byte, and a ``\\u0000`` in a plugin's output is kept, where ``jsonb`` refuses it);
- ``leases`` carries an expiry beside owner and epoch, for owners on other machines, and
  whether the owner's session holds the run's lock (not behind a transaction pooler);
- times are unix seconds (``double precision``), as in SQLite, so rows read back the same.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE runs (
    run_no        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        text NOT NULL UNIQUE,
    workflow_id   text NOT NULL,
    status        text NOT NULL,
    spec_text     text NOT NULL,
    spec_path     text NOT NULL,
    spec_redacted boolean NOT NULL DEFAULT false,
    overrides     text NOT NULL DEFAULT '[]',
    cwd           text NOT NULL,
    total_steps   integer NOT NULL,
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL,
    finished_at   double precision,
    pid           integer,
    steps_done    integer
);
CREATE INDEX runs_by_status ON runs (status, run_no);
CREATE INDEX runs_by_workflow ON runs (workflow_id, run_no);

CREATE TABLE events (
    run_no  bigint NOT NULL REFERENCES runs (run_no),
    seq     integer NOT NULL,
    type    text NOT NULL,
    step_id text,
    payload text NOT NULL,
    PRIMARY KEY (run_no, seq)
);

CREATE TABLE interventions (
    run_no       bigint NOT NULL REFERENCES runs (run_no),
    seq          integer NOT NULL,   -- of its InterventionRequested event
    step_id      text NOT NULL,
    plugin       text NOT NULL,
    error        text NOT NULL,
    error_type   text NOT NULL,
    hint         text,
    attempts     integer NOT NULL,
    requested_at double precision NOT NULL,
    action       text,               -- retry | skip | abort; NULL while waiting
    outputs      text,
    decided_by   text,
    resolved_at  double precision,
    comment      text,
    PRIMARY KEY (run_no, seq)
);

CREATE TABLE cache (
    plugin     text NOT NULL,
    key        bytea NOT NULL,
    version    text NOT NULL,
    run_no     bigint NOT NULL,     -- the StepFinished event holding the outputs
    seq        integer NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (plugin, key)
);

CREATE TABLE durations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin     text NOT NULL,
    duration_s double precision NOT NULL,
    at         double precision NOT NULL,
    inputs     text
);
CREATE INDEX durations_by_plugin ON durations (plugin, id);
CREATE INDEX durations_by_inputs ON durations (plugin, inputs, id);

CREATE TABLE leases (
    run_no      bigint PRIMARY KEY REFERENCES runs (run_no),
    owner       text NOT NULL,
    epoch       integer NOT NULL,
    acquired_at double precision NOT NULL,
    expires_at  double precision    -- NULL: held by a session lock (dies with its connection)
);

CREATE TABLE submissions (
    request_id text PRIMARY KEY,
    run_no     bigint NOT NULL REFERENCES runs (run_no)
);

CREATE TABLE remote_schemas (
    target        text NOT NULL,
    plugin        text NOT NULL,
    version       text NOT NULL,
    description   text NOT NULL,
    idempotent    integer NOT NULL,
    input_schema  text NOT NULL,
    output_schema text NOT NULL,
    reported_at   double precision NOT NULL,
    PRIMARY KEY (target, plugin)
)
"""),
    # An owner behind a pooler in transaction mode holds no session lock: its lease is
    # known alive by its expiry alone (``flowhost.store.postgres.lease``).
    (2, """
ALTER TABLE leases ADD COLUMN session_bound boolean NOT NULL DEFAULT true
"""),
    # A job one replica among those sharing the database does (``Store.hold_role``): a
    # row with an expiry, so that it works behind a transaction pooler too.
    (3, """
CREATE TABLE roles (
    name       text PRIMARY KEY,
    owner      text NOT NULL,
    expires_at double precision NOT NULL
)
"""),
]

LATEST = MIGRATIONS[-1][0]
# The advisory lock key that serializes migrations ("flowhost" in the low bits).
MIGRATION_LOCK = 0x666C6F77686F7374


def current_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    exists = conn.execute("SELECT to_regclass('flowhost_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM flowhost_schema").fetchone()
    return int(row[0] or 0) if row else 0


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the schema up to date in one transaction; the version found before (0: a new
    database). Raises ``NewerSchemaError`` for a newer one."""
    from flowhost.store.schema import NewerSchemaError

    version = current_version(conn)
    if version > LATEST:
        raise NewerSchemaError(version)
    if version == LATEST:
        return version
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS flowhost_schema "
                     "(version integer PRIMARY KEY, applied_at double precision NOT NULL)")
        version = current_version(conn)  # another process may have migrated meanwhile
        if version > LATEST:
            raise NewerSchemaError(version)
        for number, script in MIGRATIONS:
            if number > version:
                for statement in (part.strip() for part in script.split(";\n")):
                    if statement:
                        conn.execute(statement)
                conn.execute("INSERT INTO flowhost_schema VALUES (%s, %s)",
                             (number, time.time()))
    return version
