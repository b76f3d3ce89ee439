"""The PostgreSQL state store (``--store postgresql://…``): the Protocols of
``flowhost.store.interface`` on a database several hosts share. It needs psycopg 3
(``pip install 'flowhost[postgres]'``), imported only when a PostgreSQL store is opened, so
flowhost on SQLite runs without it."""

from typing import TYPE_CHECKING

from flowhost.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]

if TYPE_CHECKING:  # the PostgreSQL backend keeps the whole contract (checked by mypy)
    from flowhost.store.interface import StateStore

    _POSTGRES: type[StateStore] = PostgresStore
