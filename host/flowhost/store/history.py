"""What the SQLite store keeps beside runs and journals: the durations of past calls (for
estimates), cache housekeeping, and roles (``StateStore.hold_role``: a job one process
among those sharing the state dir does). A base of ``flowhost.store.db.Store``."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

# Take a role when it is free or its holder's time ran out; renew it when it is the owner's.
_TAKE_ROLE = ("INSERT INTO roles (name, owner, expires_at) VALUES (?, ?, ?) "
              "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
              "expires_at = excluded.expires_at "
              "WHERE roles.owner = excluded.owner OR roles.expires_at < ?")


class History:
    conn: sqlite3.Connection
    write: Callable[[], AbstractContextManager[sqlite3.Connection]]  # (``Store.write``)

    def hold_role(self, role: str, owner: str, seconds: float) -> bool:
        now = time.time()
        with self.write() as conn:
            conn.execute(_TAKE_ROLE, (role, owner, now + seconds, now))
            row = conn.execute("SELECT owner FROM roles WHERE name = ?", (role,)).fetchone()
        return row is not None and row[0] == owner

    def let_go_of_role(self, role: str, owner: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM roles WHERE name = ? AND owner = ?", (role, owner))

    def durations(self, plugins: Iterable[str], per_plugin: int = 20) -> dict[str, list[float]]:
        """The latest successful, uncached durations of each plugin."""
        found: dict[str, list[float]] = {}
        for plugin in set(plugins):
            rows = self.conn.execute("SELECT duration_s FROM durations WHERE plugin = ? "
                                     "ORDER BY id DESC LIMIT ?", (plugin, per_plugin))
            values = [float(row[0]) for row in rows]
            if values:
                found[plugin] = values
        return found

    def similar_durations(self, wanted: Iterable[tuple[str, str]],
                          per_key: int = 20) -> dict[tuple[str, str], list[float]]:
        """The latest durations of each (plugin, inputs key): the same plugin called with
        the same inputs."""
        found: dict[tuple[str, str], list[float]] = {}
        for plugin, key in set(wanted):
            rows = self.conn.execute("SELECT duration_s FROM durations WHERE plugin = ? AND "
                                     "inputs = ? ORDER BY id DESC LIMIT ?",
                                     (plugin, key, per_key))
            if values := [float(row[0]) for row in rows]:
                found[plugin, key] = values
        return found

    def clear_cache(self, plugin: str | None = None) -> int:
        with self.write() as conn:
            if plugin is None:
                cursor = conn.execute("DELETE FROM cache")
            else:
                cursor = conn.execute("DELETE FROM cache WHERE plugin = ?", (plugin,))
        return int(cursor.rowcount)
