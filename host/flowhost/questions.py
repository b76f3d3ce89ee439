"""A run's questions to a person as the state store holds them: which are still open, when
a question's ``manual.timeout`` is up, and the answer that then applies (its
``manual.default``, decided by "timeout").

The deadline is the question's own (``InterventionRequested.ts + timeout_s``), so it holds
across processes and restarts: whoever takes a run over after a deadline passed (the daemon,
``flowhost resume``, ``flowhost runs resolve``) applies the default first, as if it had been
applied on time — and a person's answer after that loses to it, like any second answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from flowhost.events import Event, InterventionRequested, InterventionResolved
from flowhost.intervene import BY_TIMEOUT
from flowhost.store.checkpoint import read
from flowhost.store.interface import StateStore
from flowhost.store.rows import RunRecord


def deadline(asked: InterventionRequested) -> float | None:
    """When (unix time) the question's default applies; None: it waits for a person."""
    if asked.timeout_s is None or asked.default is None:
        return None
    return asked.ts + asked.timeout_s


def timeout_answer(asked: InterventionRequested) -> InterventionResolved:
    """The answer of nobody answering in time: the step's default, at the deadline."""
    at = deadline(asked)
    assert at is not None and asked.default is not None
    return InterventionResolved(run_id=asked.run_id, step_id=asked.step_id,
                                action=asked.default, by=BY_TIMEOUT, plugin=asked.plugin,
                                ts=at)


def still_open(store: StateStore, record: RunRecord,
               events: Sequence[Event]) -> dict[str, InterventionRequested]:
    """The run's questions without an answer, in its log or recorded for it, by step."""
    waiting = read(events).waiting
    if not waiting:
        return waiting
    answered = store.answers(record)
    return {sid: asked for sid, asked in waiting.items() if asked.seq not in answered}


def next_deadline(store: StateStore, record: RunRecord,
                  events: Sequence[Event]) -> float | None:
    """The earliest deadline of the run's open questions (None: none has one)."""
    found = [d for asked in still_open(store, record, events).values()
             if (d := deadline(asked)) is not None]
    return min(found, default=None)


def settle(store: StateStore, record: RunRecord, events: list[Event],
           now: float | None = None) -> list[Event]:
    """For the run's owner: put the answers recorded for it while another process executed
    it into its log, and apply the defaults of the open questions whose time is up. The
    run's events afterwards."""
    waiting = read(events).waiting
    if not waiting:
        return events
    now = time.time() if now is None else now
    answered = store.answers(record)
    logged: list[Event] = []
    for asked in waiting.values():
        answer = answered.get(asked.seq)
        if answer is not None:
            store.append(record, [answer])
            logged.append(answer)
            continue
        at = deadline(asked)
        if at is not None and at <= now:
            answer, won = store.append_decision(record, timeout_answer(asked),
                                                request_seq=asked.seq, log=True)
            if not won:  # answered a moment ago, by someone who does not own the run
                store.append(record, [answer])
            logged.append(answer)
    return [*events, *logged] if logged else events


def expire_unowned(store: StateStore, record: RunRecord, events: Sequence[Event],
                   now: float | None = None) -> bool:
    """While another process executes the run: record the defaults of its open questions
    whose time is up, for that process to pick up. Whether any was recorded."""
    now = time.time() if now is None else now
    recorded = False
    for asked in still_open(store, record, events).values():
        at = deadline(asked)
        if at is not None and at <= now:
            _, won = store.append_decision(record, timeout_answer(asked),
                                           request_seq=asked.seq, log=False)
            recorded = recorded or won
    return recorded
