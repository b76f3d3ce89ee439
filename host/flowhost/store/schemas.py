"""What remote plugins reported of themselves, in the ``remote_schemas`` table.

Each time a check reaches a plugin server, the descriptors it lists are recorded here; when
a later check cannot reach it, the workflow is checked against them instead
(``flowhost.catalog``). A check usually finds what it would write already there: it then
writes nothing, unless the row is more than an hour old (so ``reported_at`` stays roughly
when the server last said so, without a write per check).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowhost.invokers import RecordedSchemas, RemoteDescriptor
from flowhost.problems import StorageError, UserInputError

if TYPE_CHECKING:
    from flowhost.store.db import Store
    from flowhost.store.interface import StateStore

log = logging.getLogger(__name__)
REFRESH_SECONDS = 3600.0

_COLUMNS = "version, description, idempotent, input_schema, output_schema, reported_at"
_UPSERT = (f"INSERT INTO remote_schemas (target, plugin, {_COLUMNS}) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target, plugin) DO UPDATE SET "
           "version = excluded.version, description = excluded.description, "
           "idempotent = excluded.idempotent, input_schema = excluded.input_schema, "
           "output_schema = excluded.output_schema, reported_at = excluded.reported_at")

_Row = tuple[str, str, int, str, str, float]


def _dumps(schema: dict[str, object]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _row(plugin: RemoteDescriptor, at: float) -> _Row:
    return (plugin.version, plugin.description, int(plugin.idempotent),
            _dumps(plugin.input_schema), _dumps(plugin.output_schema), at)


def recorded(store: Store, target: str, plugin: str) -> RecordedSchemas | None:
    row = store.conn.execute(f"SELECT {_COLUMNS} FROM remote_schemas WHERE target = ? AND "
                             "plugin = ?", (target, plugin)).fetchone()
    return None if row is None else decode(plugin, row)


def decode(plugin: str, row: tuple[Any, ...]) -> RecordedSchemas | None:
    """The descriptor of a row of ``_COLUMNS`` (None for a damaged one); every backend's."""
    version, description, idempotent, inputs, outputs, at = row
    try:
        schemas = json.loads(inputs), json.loads(outputs)
    except ValueError:  # written by hand, or damaged: as if nothing were known
        return None
    if not all(isinstance(schema, dict) for schema in schemas):
        return None
    return RecordedSchemas(RemoteDescriptor(plugin, str(version), str(description),
                                            bool(idempotent), schemas[0], schemas[1]),
                           float(at))


def record(store: Store, target: str, plugins: Iterable[RemoteDescriptor]) -> None:
    now = time.time()
    wanted = {plugin.name: _row(plugin, now) for plugin in plugins}
    if not wanted:
        return
    stale = news(wanted, store.conn.execute(
        f"SELECT plugin, {_COLUMNS} FROM remote_schemas WHERE target = ?", (target,)), now)
    if not stale:
        return
    with store.write() as conn:
        conn.executemany(_UPSERT, [(target, name, *row) for name, row in stale])


def news(wanted: dict[str, _Row], rows: Iterable[tuple[Any, ...]],
         now: float) -> list[tuple[str, _Row]]:
    """What of ``wanted`` differs from the ``rows`` recorded (plugin, ``_COLUMNS``), or was
    recorded more than ``REFRESH_SECONDS`` ago: what to write."""
    known: dict[str, _Row] = {
        str(name): (str(v), str(d), int(i), str(ins), str(outs), float(at))
        for name, v, d, i, ins, outs, at in rows}
    return [(name, row) for name, row in wanted.items()
            if name not in known or known[name][:-1] != row[:-1]
            or now - known[name][-1] > REFRESH_SECONDS]


class StateDirSchemas:
    """``SchemaMemory`` on the state store of a run (its state dir's SQLite, or the
    PostgreSQL of ``store_url``, so that every machine on one database knows what a server
    reported to any of them): the store is opened for each use, in the calling thread
    (checks run on threads of their own), and a failure to read or write it never fails a
    check: the schemas are a help, not the run's state."""

    def __init__(self, state_dir: Path, busy_timeout: float, *, create: bool = True,
                 store_url: str | None = None) -> None:
        self.state_dir = state_dir
        self.busy_timeout = busy_timeout
        self.create = create  # False: record only into a store that exists already
        self.store_url = store_url

    def recorded_schemas(self, target: str, plugin: str) -> RecordedSchemas | None:
        store = self._open(create=False)
        if store is None:
            return None
        try:
            return store.recorded_schemas(target, plugin)
        except (sqlite3.Error, StorageError) as exc:
            log.debug("reading the schemas of %s/%s in %s: %s", target, plugin,
                      self.state_dir, exc)
            return None
        finally:
            store.close()

    def record_schemas(self, target: str, plugins: Iterable[RemoteDescriptor]) -> None:
        store = self._open(create=self.create)
        if store is None:
            return
        try:
            store.record_schemas(target, plugins)
        except (sqlite3.Error, StorageError) as exc:
            log.debug("recording the schemas of %s in %s: %s", target, self.state_dir, exc)
        finally:
            store.close()

    def _open(self, *, create: bool) -> StateStore | None:
        from flowhost.store.db import Store

        try:
            if self.store_url is not None:
                from flowhost.store.postgres import PostgresStore

                return PostgresStore.open(self.store_url, busy_timeout=self.busy_timeout,
                                          create=create)
            return Store.open(self.state_dir, busy_timeout=self.busy_timeout, create=create)
        except UserInputError as exc:  # no state dir yet, or one this flowhost cannot use
            log.debug("state store %s: %s", self.store_url or self.state_dir, exc)
            return None
