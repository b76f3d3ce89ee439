"""Answers to a run's questions, in the ``interventions`` table: where an answer counts.

An answer is taken atomically, only while its question has none, so exactly one wins (a
person's, another person's, the timeout's). It goes into the run's log too: at once when the
one answering owns the run, or else later, by the process that executes the run, which picks
it up here (``recorded``) while its question is open, or when it takes the run over.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flowhost.events import InterventionResolved
from flowhost.store import codec
from flowhost.store.rows import side_tables

if TYPE_CHECKING:
    from flowhost.store.db import Store
    from flowhost.store.rows import RunRecord

# (``interventions.seq`` is the question's row offset in the run's range of ``events``: its
# event's seq less one)
_DECIDE = ("UPDATE interventions SET action = ?, outputs = ?, decided_by = ?, resolved_at = ?, "
           "comment = ? WHERE run_no = ? AND seq = ? AND action IS NULL")
_ANSWERS = ("SELECT seq, step_id, action, outputs, decided_by, resolved_at, comment, plugin "
            "FROM interventions WHERE run_no = ? AND action IS NOT NULL")


def take(store: Store, record: RunRecord, event: InterventionResolved, request_seq: int,
         log: bool) -> tuple[InterventionResolved, bool]:
    """Record ``event`` as the answer to the question of seq ``request_seq`` if it has none:
    (the answer that counts, whether it is ``event``). With ``log`` (the caller owns the
    run) the event is appended to the run's log in the same transaction."""
    outputs = codec.dumps(event.outputs) if event.outputs is not None else None
    with store.write() as conn:
        cursor = conn.execute(_DECIDE, (event.action, outputs, event.by, event.ts,
                                        event.comment or None, record.run_no, request_seq - 1))
        if cursor.rowcount == 0:
            exists = conn.execute("SELECT 1 FROM interventions WHERE run_no = ? AND seq = ?",
                                  (record.run_no, request_seq - 1)).fetchone()
            if exists is not None:
                winner = _answer(store, record, request_seq)
                assert winner is not None
                return winner, False
            # (no row for the question: only the log can tell, as before answers had one)
        if log:
            seq = store.next_seq(record)
            event.seq = seq + 1
            kind, step_id, payload = codec.encode(event)
            from flowhost.store.rows import SEQ_BITS

            conn.execute("INSERT INTO events (id, type, step_id, payload) VALUES (?, ?, ?, ?)",
                         ((record.run_no << SEQ_BITS) + seq, kind, step_id, payload))
            if cursor.rowcount == 0:
                side_tables(conn, record.run_no, seq, event)
    return event, True


def recorded(store: Store, record: RunRecord) -> dict[int, InterventionResolved]:
    """Every answer the run's questions have, by the seq of the question."""
    found = {}
    for seq, step_id, action, outputs, by, at, comment, plugin in store.conn.execute(
            _ANSWERS, (record.run_no,)):
        found[int(seq) + 1] = InterventionResolved(
            run_id=record.run_id, step_id=str(step_id), action=action,
            outputs=json.loads(outputs) if outputs is not None else None, by=str(by),
            plugin=str(plugin), comment=str(comment or ""), ts=float(at))
    return found


def _answer(store: Store, record: RunRecord, request_seq: int) -> InterventionResolved | None:
    return recorded(store, record).get(request_seq)
