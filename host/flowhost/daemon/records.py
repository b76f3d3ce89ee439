"""What the daemon itself writes and reads in the state store, on the store's thread: runs
accepted, decisions of people, runs it finishes without a worker (cancelled while queued or
waiting, failed after their workers died), results and pages of runs.

Each function takes the open ``Store`` first (``Journal.call`` passes it). The daemon takes
a run's lease for every write, as any process that writes to a run does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowhost import questions
from flowhost.daemon import executions
from flowhost.engine import new_run_id
from flowhost.events import (
    Event,
    InterventionRequested,
    InterventionResolved,
    RunFinished,
    StepFinished,
)
from flowhost.problems import UserInputError
from flowhost.runs import folded_result
from flowhost.spec_loading import parse_spec
from flowhost.store import RunRecord, Store, read
from flowhost.store.db import UNFINISHED

OWNER = f"{socket.gethostname()}:{os.getpid()}:daemon"
RUNS_DIR = "runs"


class NotFound(Exception):
    """An unknown run or step (NOT_FOUND)."""


class Refused(Exception):
    """Not possible in the run's present state (FAILED_PRECONDITION)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    record: RunRecord
    created: bool


def run_dir(state_dir: Path, run_id: str) -> Path:
    return state_dir / RUNS_DIR / run_id


def find(store: Store, run_id: str) -> RunRecord:
    try:
        return store.run(run_id)
    except UserInputError:
        raise missing(run_id) from None


def missing(run_id: str) -> NotFound:
    return NotFound(f"no run '{run_id}' in this daemon. `flowhost runs list --server ...` "
                    "shows its runs")


def submitted(store: Store, request_id: str) -> RunRecord | None:
    return store.submission(request_id)


def accept(store: Store, *, request_id: str, checked: dict[str, Any],
           new_id: Callable[[], str] = new_run_id) -> Accepted:
    """Record a checked submission as a ``queued`` run (once per request id) with its own
    working directory under the state dir, committed before this returns."""
    while True:
        run_id = new_id()
        workdir = run_dir(store.state_dir, run_id)
        try:
            workdir.mkdir(parents=True, mode=0o700)  # the run's files: its submitter's
        except FileExistsError:
            # Ids are the second and a few random digits: at hundreds of submissions a
            # second two can meet. The folder is taken atomically: the next id, then.
            continue
        break
    record, created = store.submit_run(
        request_id=request_id, run_id=run_id, workflow_id=str(checked["workflow_id"]),
        spec_text=str(checked["spec_text"]), spec_path=str(checked["spec_name"]),
        spec_redacted=bool(checked["spec_redacted"]),
        overrides=[str(o) for o in checked["overrides"]], cwd=str(workdir),
        total_steps=int(checked["total_steps"]))
    if not created:
        workdir.rmdir()  # a repeat: the earlier run has its own
    return Accepted(record, created)


def is_daemon_run(store: Store, record: RunRecord) -> bool:
    """Runs the daemon accepted live in its own runs folder (a `flowhost run` that used
    the same state dir is not the daemon's to go on with)."""
    return Path(record.cwd).parent == store.state_dir / RUNS_DIR


@dataclass(frozen=True, slots=True)
class Unfinished:
    to_run: list[RunRecord]  # queued, interrupted, running without an owner; oldest first
    owned: list[RunRecord]  # running in another process: go on once it lets go
    deadlines: dict[str, float]  # waiting runs: when the first manual.timeout is up


def unfinished(store: Store, claimed: bool = False) -> Unfinished:
    """Where the daemon's accepted, unfinished runs stand when it starts. ``claimed``
    (replicas on a shared store): runs are claimed, not taken up by where their working
    directory is, so only the waiting runs' deadlines are read (expiring a question takes
    the run's lease: the replicas that all schedule it expire it once)."""
    to_run, owned, deadlines = [], [], {}
    for record in reversed(store.runs(statuses=("waiting",) if claimed else UNFINISHED)):
        if not is_daemon_run(store, record):
            continue
        if not claimed and store.owned(record):
            owned.append(record)
            continue
        ready, deadline = waits(store, record)
        if ready:
            if not claimed:
                to_run.append(record)
        elif deadline is not None:
            deadlines[record.run_id] = deadline
    return Unfinished(to_run, owned, deadlines)


def ready_to_go_on(store: Store, record: RunRecord) -> bool:
    """An unfinished run no one owns that a worker should take: all but a run that still
    waits for a person's answer (one recorded but not logged yet counts: the worker that
    takes the run logs it)."""
    return waits(store, record)[0]


def waits(store: Store, record: RunRecord) -> tuple[bool, float | None]:
    """Whether the run should go on (``ready_to_go_on``), and if it waits, when the first
    of its questions' timeouts is up (None: they wait for a person)."""
    events = store.events(record)
    point = read(events)
    if point.done:
        return False, None
    if not point.waiting:
        return True, None
    if not questions.still_open(store, record, events):
        return True, None
    return False, questions.next_deadline(store, record, events)


@dataclass(frozen=True, slots=True)
class Expired:
    record: RunRecord
    goes_on: bool  # no question is left: queue it
    executing: bool  # a worker executes it: tell it, it applies what was recorded
    next: float | None  # the next deadline of its questions


def expire(store: Store, run_id: str, now: float) -> Expired:
    """Apply the defaults of the run's questions whose ``manual.timeout`` is up (as any
    answer: only where none came first)."""
    record = find(store, run_id)
    lease = store.acquire(record, OWNER)
    try:
        events = store.events(record)
        if read(events).done:
            return Expired(record, False, False, None)
        if lease is None:  # a worker has it: record them for the worker to apply
            told = questions.expire_unowned(store, record, events, now)
            return Expired(record, False, told, questions.next_deadline(store, record, events))
        after = executions.writing(store, record)
        events = questions.settle(store, record, events, now)
        executions.wrote(store, record, after)
        left = questions.still_open(store, record, events)
        return Expired(record, not left, False, questions.next_deadline(store, record, events))
    finally:
        if lease is not None:
            store.release(lease)


def finish(store: Store, run_id: str, status: str, reason: str,
           error_type: str = "Cancelled") -> str | None:
    """End a run that no worker executes (``cancelled`` or ``failed``): the steps it had in
    flight end with it. The run's status afterwards; None when another process owns it."""
    record = store.run(run_id)
    lease = store.acquire(record, OWNER)
    if lease is None:
        return None
    try:
        events = store.events(record)
        point = read(events)
        if point.done:
            return point.status
        plugins = {step_id: plugin for step_id, plugin, _ in point.steps}
        ended: list[Event] = []
        in_flight = sorted(point.in_flight - set(point.finished))
        if not in_flight and status == "failed":
            # Its worker died before the start of the step it ran was committed (a step's
            # start is written with the next commit): the failure is that step's, the
            # first one not finished.
            in_flight = [step_id for step_id in plugins if step_id not in point.finished][:1]
        for step_id in in_flight:
            plugin = plugins.get(step_id, "")
            ended.append(StepFinished(
                run_id=run_id, step_id=step_id, plugin=plugin, used_plugin=plugin,
                status="cancelled" if status == "cancelled" else "failed", attempts=0,
                duration_s=0.0, error=reason, error_type=error_type, reason=reason))
        ended.append(RunFinished(run_id=run_id, status=status,  # type: ignore[arg-type]
                                 duration_s=0.0, message=reason,
                                 workflow_id=record.workflow_id))
        after = executions.writing(store, record)
        store.append(record, ended)
        executions.wrote(store, record, after)
        return status
    finally:
        store.release(lease)


# -- decisions ------------------------------------------------------------------------------

def step_ids(store: Store, record: RunRecord) -> list[str]:
    point = read(store.events(record))
    if point.steps:
        return [step_id for step_id, _, _ in point.steps]
    try:
        spec = parse_spec(record.spec_text, record.spec_path, record.overrides)
    except UserInputError:
        return []
    return [step.id or step.plugin for step in spec.workflow.steps]


def _last_answer(events: Iterable[Event], step_id: str) -> InterventionResolved | None:
    answer: InterventionResolved | None = None
    for event in events:
        if isinstance(event, InterventionRequested) and event.step_id == step_id:
            answer = None
        elif isinstance(event, InterventionResolved) and event.step_id == step_id:
            answer = event
    return answer


def _answered(answer: InterventionResolved, run_id: str, step_id: str) -> Refused:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(answer.ts))
    return Refused(f"step '{step_id}' of run {run_id} was already answered: {answer.action} "
                   f"by {answer.by} at {when}; only the first answer counts")


def question(store: Store, run_id: str, step_id: str) -> RunRecord:
    """The run, if ``step_id`` of it waits for a person now; else NotFound or Refused."""
    record = find(store, run_id)
    if step_id not in step_ids(store, record):
        raise NotFound(f"run {run_id} has no step '{step_id}'")
    events = store.events(record)
    point = read(events)
    asked = point.waiting.get(step_id)
    if asked is not None:
        answer = store.answers(record).get(asked.seq)  # recorded, its worker to apply it
        if answer is not None:
            raise _answered(answer, run_id, step_id)
        return record
    answer = _last_answer(events, step_id)
    if answer is not None:
        raise _answered(answer, run_id, step_id)
    waiting = ", ".join(point.waiting) or "none"
    status = store.live_status(record)
    raise Refused(f"step '{step_id}' of run {run_id} is not waiting for a decision (the run "
                  f"is {status}; steps waiting: {waiting})")


@dataclass(frozen=True, slots=True)
class Answered:
    decision: InterventionResolved
    goes_on: bool  # no question of the run is left, and nothing executes it: queue it
    executing: bool  # a worker executes the run: tell it, it applies the answer at once


def decide(store: Store, run_id: str, step_id: str, action: str,
           outputs: dict[str, Any] | None, comment: str, by: str) -> Answered:
    """Record a person's answer, if it is the first (a second answer, or one after the
    step's manual.timeout was up, is Refused naming the one that counts).

    A run no process executes gets the answer in its log at once. One that a worker
    executes (its other branches still run) gets it recorded for that worker, which logs
    it and goes on with the step at once, or, if the run stopped to wait meanwhile, when
    the run is taken up again."""
    record = question(store, run_id, step_id)
    lease = store.acquire(record, OWNER)
    after = executions.writing(store, record) if lease is not None else None
    try:
        events = store.events(record)
        if lease is not None:
            events = questions.settle(store, record, events)  # (a timeout that is up first)
        point = read(events)
        asked = point.waiting.get(step_id)
        if asked is None:  # answered between the look and the lease
            answer = _last_answer(events, step_id)
            raise _answered(answer, run_id, step_id) if answer is not None else Refused(
                f"step '{step_id}' of run {run_id} is not waiting for a decision")
        decision = InterventionResolved(
            run_id=run_id, step_id=step_id, action=action,  # type: ignore[arg-type]
            outputs=outputs, by=by, plugin=asked.plugin, comment=comment)
        winner, won = store.append_decision(record, decision, request_seq=asked.seq,
                                            log=lease is not None)
        if not won:
            raise _answered(winner, run_id, step_id)
        left = questions.still_open(store, record, events)
        return Answered(decision, lease is not None and not left, lease is None)
    finally:
        if lease is not None:
            executions.wrote(store, record, after)  # (a refused answer may follow a timeout)
            store.release(lease)


# -- reading -------------------------------------------------------------------------------

def result_json(store: Store, run_id: str) -> bytes:
    """The §7 result, with what the daemon adds: the run's working directory and its
    decisions (who answered what, when, with which comment)."""
    return result_and_status(store, run_id)[0]


def result_and_status(store: Store, run_id: str) -> tuple[bytes, str]:
    """``result_json``, and the live status the run has in it."""
    record = find(store, run_id)
    status = store.live_status(record)
    return result_document(record, store.events(record), status), status


def result_document(record: RunRecord, events: list[Event], live_status: str) -> bytes:
    """``result_json`` of what was read already: the run's events, its live status."""
    result = folded_result(record, events, live_status).model_dump(mode="json")
    result["workflow_id"] = result["workflow_id"] or record.workflow_id
    result["run_id"] = result["run_id"] or record.run_id
    if record.status == "queued":
        result["status"] = "queued"
    result["workdir"] = record.cwd
    result["decisions"] = [
        {"step_id": e.step_id, "action": e.action, "by": e.by, "at": e.ts,
         "comment": e.comment, "outputs": e.outputs}
        for e in events if isinstance(e, InterventionResolved)]
    return json.dumps(result).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Summary:
    run_no: int
    run_id: str
    workflow_id: str
    status: str
    started_at: float
    finished_at: float
    steps_total: int
    steps_done: int


def page(store: Store, *, before: int | None, limit: int, status: str,
         workflow_id: str) -> tuple[list[Summary], bool]:
    """Up to ``limit`` runs recorded before run number ``before``, newest first, and whether
    there are more."""
    records = store.runs_page(before=before, limit=limit + 1, status=status or None,
                              workflow_id=workflow_id or None)
    more = len(records) > limit
    found = [summary(r, store.live_status(r), store.steps_succeeded(r))
             for r in records[:limit]]
    return found, more


def summary(record: RunRecord, live_status: str, steps_done: int) -> Summary:
    return Summary(record.run_no, record.run_id, record.workflow_id, live_status,
                   record.created_at, record.finished_at or 0.0, record.total_steps,
                   steps_done)


def event_json(event: Event) -> bytes:
    """The whole event as JSON: its type and every field (secrets were masked before it
    was stored)."""
    data = {"type": type(event).__name__, **dataclasses.asdict(event)}
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")
