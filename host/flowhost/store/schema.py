"""The state database's schema, as an ordered list of migrations.

``schema_version`` holds one row per applied migration. A database whose version is newer
than the last migration here was written by a newer flowhost: it is refused, never touched.

Layout choices, for a cheap checkpoint (one page written per step in a chain):
- ``events.id`` is ``(run_no << 32) | seq``: a run's events are one contiguous, append-only
  range of the table's own b-tree, so no secondary index is written per event;
- step outputs are a view over the ``StepFinished`` events (the events are the truth; a
  second copy would double the write per step and could disagree with them);
- cache entries and plugin durations are written in batches, off the checkpoint's path;
- ``remote_schemas`` keeps what each remote plugin last reported of itself, so a workflow
  is checked against it while its server cannot be reached.
"""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE runs (
    run_no        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL UNIQUE,
    workflow_id   TEXT NOT NULL,
    status        TEXT NOT NULL,     -- running | success | failed | aborted | waiting | cancelled
    spec_text     TEXT NOT NULL,     -- the spec as run (references, never secret values)
    spec_path     TEXT NOT NULL,
    spec_redacted INTEGER NOT NULL DEFAULT 0,  -- 1: the text held a secret value, masked
    overrides     TEXT NOT NULL DEFAULT '[]',  -- JSON list of --set, secrets as references
    cwd           TEXT NOT NULL,
    total_steps   INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    finished_at   REAL,
    pid           INTEGER            -- the process that last ran it
);
CREATE INDEX runs_by_status ON runs (status, run_no);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY,     -- (run_no << 32) | seq: append-only, one range per run
    type    TEXT NOT NULL,           -- the event class name (flowhost.events)
    step_id TEXT,
    payload TEXT NOT NULL            -- JSON: the event's fields but run_id
);

CREATE VIEW step_outputs AS
    SELECT r.run_id AS run_id, e.step_id AS step_id,
           json_extract(e.payload, '$.status') AS status,
           json_extract(e.payload, '$.used_plugin') AS plugin,
           json_extract(e.payload, '$.outputs') AS outputs,
           json_extract(e.payload, '$.ts') AS finished_at
    FROM runs AS r JOIN events AS e
      ON e.id BETWEEN (r.run_no << 32) AND (r.run_no << 32) + 4294967295
    WHERE e.type = 'StepFinished'
      AND json_extract(e.payload, '$.status') IN ('success', 'skipped');

CREATE TABLE interventions (
    run_no       INTEGER NOT NULL REFERENCES runs (run_no),
    step_id      TEXT NOT NULL,
    seq          INTEGER NOT NULL,   -- of its InterventionRequested event
    plugin       TEXT NOT NULL,
    error        TEXT NOT NULL,
    error_type   TEXT NOT NULL,
    hint         TEXT,
    attempts     INTEGER NOT NULL,
    requested_at REAL NOT NULL,
    action       TEXT,               -- retry | skip | abort; NULL while waiting
    outputs      TEXT,               -- JSON given with a skip
    decided_by   TEXT,
    resolved_at  REAL,
    PRIMARY KEY (run_no, seq)
);

CREATE TABLE cache (
    plugin     TEXT NOT NULL,
    key        BLOB NOT NULL,        -- sha256(plugin, version, canonical inputs, secrets hashed)
    version    TEXT NOT NULL,
    event_id   INTEGER NOT NULL,     -- the StepFinished event holding the outputs (never
                                     -- outputs with a secret)
    created_at REAL NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;

CREATE TABLE durations (
    id         INTEGER PRIMARY KEY,
    plugin     TEXT NOT NULL,
    duration_s REAL NOT NULL,
    at         REAL NOT NULL
);
CREATE INDEX durations_by_plugin ON durations (plugin, id);
"""),
    (2, """
CREATE TABLE leases (
    run_no      INTEGER PRIMARY KEY REFERENCES runs (run_no),
    owner       TEXT NOT NULL,       -- who executes the run now, or did last
    epoch       INTEGER NOT NULL,    -- 1, 2, 3... one more for every new owner
    acquired_at REAL NOT NULL
);
"""),
    (3, """
CREATE TABLE submissions (
    request_id TEXT PRIMARY KEY,     -- a client's idempotency key (SubmitRun)
    run_no     INTEGER NOT NULL REFERENCES runs (run_no)
);
CREATE INDEX runs_by_workflow ON runs (workflow_id, run_no);
"""),
    # what the person said with the answer (no SQL comment here: SQLite would append it to
    # the table's CREATE statement, and comment out its closing parenthesis)
    (4, """
ALTER TABLE interventions ADD COLUMN comment TEXT
"""),
    (5, """
-- how many steps had succeeded when the run's process ended (NULL while one runs it):
-- listing runs then reads a number instead of counting their events
ALTER TABLE runs ADD COLUMN steps_done INTEGER
"""),
    (6, """
CREATE TABLE remote_schemas (
    target        TEXT NOT NULL,     -- the plugin server: grpc://HOST:PORT or grpcs://...
    plugin        TEXT NOT NULL,     -- the plugin's name on that server
    version       TEXT NOT NULL,
    description   TEXT NOT NULL,
    idempotent    INTEGER NOT NULL,
    input_schema  TEXT NOT NULL,     -- JSON Schema, as the server sent it
    output_schema TEXT NOT NULL,
    reported_at   REAL NOT NULL,     -- when a server last reported it (to the hour)
    PRIMARY KEY (target, plugin)
) WITHOUT ROWID
"""),
    (7, """
-- which inputs a duration was measured with (a hash of the step's inputs as its spec wrote
-- them; NULL before): an estimate takes the durations of the same plugin with the same
-- inputs first, since the inputs often decide how long a plugin takes
ALTER TABLE durations ADD COLUMN inputs TEXT;
CREATE INDEX durations_by_inputs ON durations (plugin, inputs, id)
"""),
    (8, """
-- a job one process among those sharing the state does, and who does it until when
-- (``Store.hold_role``)
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""),
]

LATEST = MIGRATIONS[-1][0]


class NewerSchemaError(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(found)
        self.found = found


def current_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                          "AND name = 'schema_version'").fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date, in one write transaction; refuse a newer one."""
    version = current_version(conn)
    if version > LATEST:
        raise NewerSchemaError(version)
    if version == LATEST:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        version = current_version(conn)  # another process may have migrated meanwhile
        if version > LATEST:
            raise NewerSchemaError(version)
        for number, script in MIGRATIONS:
            if number > version:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a script on ``;`` at line ends (``executescript`` would commit on its own)."""
    return [part.strip() for part in script.split(";\n") if part.strip()]
