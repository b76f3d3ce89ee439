"""What the PostgreSQL store keeps besides runs and journals: the step cache, plugin
durations, what remote plugins reported, and the answers to a run's questions (where an
answer counts: ``flowhost.store.answers`` says how, for both backends)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowhost.events import InterventionResolved
from flowhost.store import codec
from flowhost.store.cache import KeyedCache
from flowhost.store.postgres.connection import Connected
from flowhost.store.postgres.rows import insert_events, side_tables

if TYPE_CHECKING:
    from flowhost.engine import StepCache
    from flowhost.invokers import RecordedSchemas, RemoteDescriptor
    from flowhost.store.rows import RunRecord

_ANSWERS = ("SELECT seq, step_id, action, outputs, decided_by, resolved_at, comment, plugin "
            "FROM interventions WHERE run_no = %s AND action IS NOT NULL")


class PostgresCache(KeyedCache):
    """``flowhost.engine.StepCache`` on the PostgreSQL store (its entries are written by
    the journal writer, in batches)."""

    def __init__(self, store: Connected, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets)
        self._store = store

    def _load(self, plugin: str, version: str) -> dict[bytes, float]:
        rows = self._store.rows("SELECT key, created_at FROM cache WHERE plugin = %s AND "
                                "version = %s", (plugin, version))
        return {bytes(key): float(created) for key, created in rows}

    def _outputs(self, plugin: str, key: bytes) -> dict[str, Any] | None:
        row = self._store.one(
            "SELECT e.payload::json -> 'outputs' FROM cache AS c JOIN events AS e "
            "ON e.run_no = c.run_no AND e.seq = c.seq WHERE c.plugin = %s AND c.key = %s",
            (plugin, key))
        if row is None or not isinstance(row[0], dict):
            return None
        return row[0]


class History(Connected):
    def fenced(self, record: RunRecord) -> tuple[int, int] | None:
        raise NotImplementedError  # (the store's: by its lease of the run)

    def step_cache(self, secrets: Iterable[str] = ()) -> StepCache:
        return PostgresCache(self, secrets)

    def clear_cache(self, plugin: str | None = None) -> int:
        with self.write() as conn:
            if plugin is None:
                cursor = conn.execute("DELETE FROM cache")
            else:
                cursor = conn.execute("DELETE FROM cache WHERE plugin = %s", (plugin,))
            return int(cursor.rowcount)

    def durations(self, plugins: Iterable[str], per_plugin: int = 20) -> dict[str, list[float]]:
        """The latest successful, uncached durations of each plugin."""
        found: dict[str, list[float]] = {}
        for plugin in set(plugins):
            rows = self.rows("SELECT duration_s FROM durations WHERE plugin = %s "
                             "ORDER BY id DESC LIMIT %s", (plugin, per_plugin))
            if values := [float(row[0]) for row in rows]:
                found[plugin] = values
        return found

    def similar_durations(self, wanted: Iterable[tuple[str, str]],
                          per_key: int = 20) -> dict[tuple[str, str], list[float]]:
        found: dict[tuple[str, str], list[float]] = {}
        for plugin, key in set(wanted):
            rows = self.rows("SELECT duration_s FROM durations WHERE plugin = %s AND "
                             "inputs = %s ORDER BY id DESC LIMIT %s", (plugin, key, per_key))
            if values := [float(row[0]) for row in rows]:
                found[plugin, key] = values
        return found

    # -- what remote plugins reported ---------------------------------------------------
    def recorded_schemas(self, target: str, plugin: str) -> RecordedSchemas | None:
        from flowhost.store import schemas

        row = self.one(f"SELECT {schemas._COLUMNS} FROM remote_schemas WHERE target = %s "
                       "AND plugin = %s", (target, plugin))
        return None if row is None else schemas.decode(plugin, row)

    def record_schemas(self, target: str, plugins: Iterable[RemoteDescriptor]) -> None:
        from flowhost.store import schemas

        now = time.time()
        wanted = {plugin.name: schemas._row(plugin, now) for plugin in plugins}
        if not wanted:
            return
        known = self.rows(f"SELECT plugin, {schemas._COLUMNS} FROM remote_schemas "
                          "WHERE target = %s", (target,))
        if not (stale := schemas.news(wanted, known, now)):
            return
        upsert = schemas._UPSERT.replace("?", "%s")
        with self.write() as conn:
            conn.cursor().executemany(upsert, [(target, name, *row) for name, row in stale])

    # -- answers -----------------------------------------------------------------------
    def answers(self, record: RunRecord) -> dict[int, InterventionResolved]:
        """Every answer the run's questions have, by the seq of the question."""
        return {int(seq): InterventionResolved(
                    run_id=record.run_id, step_id=str(step_id), action=action,
                    outputs=json.loads(outputs) if outputs is not None else None, by=str(by),
                    plugin=str(plugin), comment=str(comment or ""), ts=float(at))
                for seq, step_id, action, outputs, by, at, comment, plugin
                in self.rows(_ANSWERS, (record.run_no,))}

    def append_decision(self, record: RunRecord, event: InterventionResolved, *,
                        request_seq: int, log: bool = True
                        ) -> tuple[InterventionResolved, bool]:
        """Record an answer to question ``request_seq`` only if it has none yet, in one
        transaction (the run's row locked, so the log's next seq is ours): (the answer that
        counts, whether it is this one); with ``log`` it goes into the run's log too."""
        outputs = codec.dumps(event.outputs) if event.outputs is not None else None
        with self.write() as conn:
            conn.execute("SELECT 1 FROM runs WHERE run_no = %s FOR UPDATE", (record.run_no,))
            decided = conn.execute(
                "UPDATE interventions SET action = %s, outputs = %s, decided_by = %s, "
                "resolved_at = %s, comment = %s WHERE run_no = %s AND seq = %s "
                "AND action IS NULL", (event.action, outputs, event.by, event.ts,
                                       event.comment or None, record.run_no, request_seq)
            ).rowcount
            if decided == 0:
                asked = conn.execute("SELECT 1 FROM interventions WHERE run_no = %s AND "
                                     "seq = %s", (record.run_no, request_seq)).fetchone()
                if asked is not None:
                    return self.answers(record)[request_seq], False
            if log:
                seq = next_seq(conn, record.run_no) + 1
                event.seq = seq
                kind, step_id, payload = codec.encode(event)
                insert_events(conn, [(record.run_no, seq, kind, step_id, payload)],
                              self.fenced(record))
                if decided == 0:
                    side_tables(conn, record.run_no, seq, event)
        return event, True


def next_seq(conn: Any, run_no: int) -> int:
    """The last seq of the run's log (0: none yet)."""
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM events WHERE run_no = %s",
                       (run_no,)).fetchone()
    return int(row[0])
