"""One connection to the PostgreSQL store, the base of ``PostgresStore``: opening it (the
URL checked, the schema migrated, every failure an exit-2 message that says what to do),
short write transactions, and reads; a database error past opening is a ``StorageError``.

The connection is in autocommit mode: a single statement (the common checkpoint) is its own
transaction, and ``write()`` opens an explicit one. ``lock_timeout`` is the store's busy
timeout, so a write blocked by another process fails after as long as SQLite would wait.

Through a pooler in transaction mode (``?pooler=transaction``) nothing may outlive a
transaction: ``lock_timeout`` is set in each write transaction (``SET LOCAL``) rather than
once (the common checkpoint sends it in the same query string as its INSERT: one round
trip), and psycopg prepares no statements (a prepared statement stays on a server
connection that the pooler then hands to another client).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowhost.problems import StorageError, UserInputError
from flowhost.store.postgres import url as store_url
from flowhost.store.postgres.errors import describe
from flowhost.store.postgres.schema import LATEST, migrate

DEFAULT_BUSY_TIMEOUT = 10.0
CONNECT_TIMEOUT_S = 10  # an unreachable server is told within this, not after TCP's minutes
Conn = Any  # psycopg.Connection, imported lazily (flowhost runs on SQLite without psycopg)


def connect(url: store_url.PostgresUrl, busy_timeout: float) -> Conn:
    """A new autocommit connection with the store's lock timeout; exit-2 errors."""
    import psycopg

    pooled = url.transaction_pooler
    try:
        conn = psycopg.connect(url.libpq, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="flowhost",
                               prepare_threshold=None if pooled else 5)
    except psycopg.Error as exc:
        raise UserInputError(describe(exc, url.where, busy_timeout)) from None
    if not pooled:
        conn.execute(f"SET lock_timeout = {lock_timeout_ms(busy_timeout)}")
    return conn


def lock_timeout_ms(busy_timeout: float) -> int:
    """``lock_timeout`` in milliseconds; 0 would mean "wait for ever", so a zero timeout
    waits 1 ms."""
    return max(int(busy_timeout * 1000), 1)


class Connected:
    """A store's connection and how it is used (``PostgresStore`` builds on it)."""

    def __init__(self, conn: Conn, url: store_url.PostgresUrl, busy_timeout: float) -> None:
        self.conn = conn
        self.url = url
        self.where = url.where
        self.path = Path(self.where)  # what messages print as the store
        self.busy_timeout = busy_timeout
        self.pooled = url.transaction_pooler  # behind a pooler in transaction mode

    @classmethod
    def open_connection(cls, url: str, *, busy_timeout: float | None = None,
                        create: bool = True) -> tuple[Conn, store_url.PostgresUrl, float]:
        """Connect and migrate; with ``create=False`` a database that never held flowhost
        state is refused (nothing is created in it)."""
        import psycopg

        from flowhost.store.schema import NewerSchemaError

        parsed = store_url.parse(url)
        timeout = DEFAULT_BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        conn = connect(parsed, timeout)
        try:
            if not create:
                row = conn.execute("SELECT to_regclass('flowhost_schema')").fetchone()
                if row is None or row[0] is None:
                    raise UserInputError(
                        f"no flowhost state in {parsed.where}: no run was recorded there. "
                        "Pass the --store the run used (or $FLOWHOST_STORE)")
            migrate(conn)
        except NewerSchemaError as exc:
            conn.close()
            raise UserInputError(
                f"{parsed.where}: written by a newer flowhost (state schema {exc.found}; "
                f"this one knows up to {LATEST}). Upgrade flowhost, or use another "
                "--store") from None
        except psycopg.Error as exc:
            conn.close()
            raise UserInputError(describe(exc, parsed.where, timeout)) from None
        except BaseException:
            conn.close()
            raise
        return conn, parsed, timeout

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[Conn]:
        """One short write transaction; database errors become a ``StorageError``."""
        with self.failing_as_storage(), self.transaction():
            yield self.conn

    @property
    def statement_lock_timeout(self) -> int | None:
        """The lock timeout (ms) a single statement must set itself: behind a transaction
        pooler (``rows.insert_events``); None where the session's setting holds."""
        return lock_timeout_ms(self.busy_timeout) if self.pooled else None

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """A transaction of the store's connection, with the store's lock timeout also
        behind a pooler in transaction mode (database errors pass as they are)."""
        with self.conn.transaction():
            if (timeout_ms := self.statement_lock_timeout) is not None:
                self.conn.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
            yield self.conn

    @contextmanager
    def failing_as_storage(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise StorageError(describe(exc, self.where, self.busy_timeout)) from None

    def rows(self, sql: str, params: Sequence[object] | Mapping[str, object] = ()
             ) -> list[tuple[Any, ...]]:
        with self.failing_as_storage():
            return list(self.conn.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[object] | Mapping[str, object] = ()
            ) -> tuple[Any, ...] | None:
        with self.failing_as_storage():
            row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
            return row

    def change(self, sql: str, params: Sequence[object] = ()) -> int:
        """One statement that returns no rows (its own transaction); how many it changed."""
        if self.pooled:  # (for the lock timeout: ``transaction``)
            with self.write() as conn:
                return int(conn.execute(sql, params).rowcount)
        with self.failing_as_storage():
            return int(self.conn.execute(sql, params).rowcount)
