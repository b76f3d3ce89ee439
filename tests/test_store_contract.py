"""The contract every state store backend keeps (``flowhost.store.interface.StateStore``),
tested through the Protocol alone, on every backend of ``BACKENDS``: SQLite, and PostgreSQL
on a real server started for the session (``tests/postgres_server.py``; skipped, saying why,
where no PostgreSQL is installed), directly and through PgBouncer in transaction mode
(``?pooler=transaction``: leases without session locks)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowhost import events as ev
from flowhost.problems import UserInputError
from flowhost.store import Store
from flowhost.store.interface import StateStore
from flowhost.store.rows import RunRecord

Open = Callable[..., StateStore]


@dataclass
class Backend:
    """One store to test: how to open it (also with a short busy timeout), how a child
    process opens it (``child_open``, Python that binds ``s`` from ``sys.argv[1]``, which
    is ``where``), how another session keeps its writes waiting, and how long after an
    owner was killed its run is free (``after_kill``)."""

    where: str
    open: Callable[..., StateStore]
    child_open: str
    block_writes: Callable[[], contextlib.AbstractContextManager[None]]
    after_kill: Callable[[StateStore, RunRecord], None] = lambda store, record: None


def _until_free(store: StateStore, record: RunRecord) -> None:
    """The server ends a killed client's session (and drops its locks) once it reads the
    closed socket: moments later, not at once."""
    deadline = time.monotonic() + 30
    while store.owned(record) and time.monotonic() < deadline:
        time.sleep(0.02)


def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    state = tmp_path / "state"

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        holder = sqlite3.connect(state / "state.db", isolation_level=None, timeout=0)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    return Backend(str(state), lambda **kw: Store.open(state, **kw),
                   "from flowhost.store import Store; s = Store.open(sys.argv[1])", block)


def _postgresql(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    url: str = request.getfixturevalue("postgres_url")
    from flowhost.store.postgres import PostgresStore

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        import psycopg

        with psycopg.connect(url) as holder:  # a transaction until the block ends
            holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # reads still go on
            yield
            holder.rollback()

    return Backend(url, lambda **kw: PostgresStore.open(url, **kw),
                   "from flowhost.store.postgres import PostgresStore; "
                   "s = PostgresStore.open(sys.argv[1])", block, _until_free)


def _through_pgbouncer(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    direct = _postgresql(tmp_path, request)
    url: str = request.getfixturevalue("pgbouncer").url(direct.where)
    from flowhost.store.postgres import PostgresStore

    # Behind a transaction pooler a killed owner is known only by its lease running out:
    # the child's lease is short, and the test waits it out.
    return Backend(url, lambda **kw: PostgresStore.open(url, **kw),
                   "from flowhost.store.postgres import PostgresStore; "
                   "s = PostgresStore.open(sys.argv[1], lease_seconds=1.0)",
                   direct.block_writes, _until_free)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Backend]] = {
    "sqlite": _sqlite, "postgresql": _postgresql, "postgresql-pgbouncer": _through_pgbouncer}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def open_store(backend: Backend) -> Iterator[Open]:
    opened: list[StateStore] = []

    def make(**options: Any) -> StateStore:
        store = backend.open(**options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def new_run(store: StateStore, run_id: str = "r1", workflow: str = "w") -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id=workflow, spec_text="t",
                            spec_path="/w.yaml", spec_redacted=False, overrides=[],
                            cwd="/", total_steps=2)


def started(run_id: str, step: str) -> ev.StepStarted:
    return ev.StepStarted(run_id, step, "noop", "", 1, 2)


def finished(run_id: str, step: str, outputs: dict[str, object] | None = None
             ) -> ev.StepFinished:
    return ev.StepFinished(run_id, step, "noop", "noop", "success", 1, 0.1,
                           outputs or {"value": 1})


def test_runs_are_recorded_found_and_listed_newest_first(open_store: Open) -> None:
    store = open_store()
    first, second = new_run(store, "r1"), new_run(store, "r2", "other")
    assert store.run("r1") == first
    assert [r.run_id for r in store.runs()] == ["r2", "r1"]
    assert [r.run_id for r in store.runs(limit=1)] == ["r2"]
    assert [r.run_id for r in store.runs(statuses=["running"])] == ["r2", "r1"]
    assert second.workflow_id == "other" and second.cwd == "/"
    with pytest.raises(UserInputError, match="no run 'nope'"):
        store.run("nope")


def test_the_journal_numbers_events_1_2_3_without_gaps(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    store.append(record, [started("r1", "a"), finished("r1", "a")])
    writer = store.writer(record)
    for event in (started("r1", "b"), finished("r1", "b")):
        writer(event)
    writer.close()
    loaded = store.events(record)
    assert [e.seq for e in loaded] == [1, 2, 3, 4]
    assert [type(e).__name__ for e in loaded] == ["StepStarted", "StepFinished"] * 2
    assert [e.seq for e in store.events(record, after_seq=2)] == [3, 4]
    assert store.events(record, after_seq=4) == []
    assert store.steps_succeeded(record) == 2


def test_a_finished_step_is_committed_before_the_writer_returns(open_store: Open) -> None:
    store, other = open_store(), open_store()
    record = new_run(store)
    writer = store.writer(record)
    writer(started("r1", "a"))
    writer(finished("r1", "a"))
    seen = other.events(other.run("r1"))  # another connection, before close()
    assert [type(e).__name__ for e in seen][-1] == "StepFinished"
    writer.close()


def test_runs_of_other_journals_stay_apart(open_store: Open) -> None:
    store = open_store()
    one, two = new_run(store, "one"), new_run(store, "two")
    store.append(one, [started("one", "a")])
    store.append(two, [started("two", "x"), finished("two", "x")])
    store.append(one, [finished("one", "a")])
    assert [e.step_id for e in store.events(one)] == ["a", "a"]  # type: ignore[attr-defined]
    assert [e.seq for e in store.events(two)] == [1, 2]


def test_ownership_is_exclusive_not_reentrant_and_counts_epochs(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    assert not store.owned(record)
    lease = store.acquire(record, "me")
    assert lease is not None and (lease.owner, lease.epoch) == ("me", 1)
    assert store.owned(record)
    assert store.acquire(record, "me") is None  # not re-entrant: no second executor
    assert store.latest_resumable() is None  # owned: not free to resume
    store.release(lease)
    store.release(lease)  # a second time is a no-op
    assert not store.owned(record)
    again = store.acquire(record, "someone else")
    assert again is not None and again.epoch == 2
    store.release(again)
    assert store.latest_resumable() == record


def test_a_run_whose_owner_died_is_interrupted_and_free(open_store: Open,
                                                        backend: Backend) -> None:
    store = open_store()
    record = new_run(store)
    assert store.live_status(record) == "interrupted"  # recorded running, nobody owns it
    # Another process owns it while it lives.
    script = (f"import sys, time; {backend.child_open}; l = s.acquire(s.run('r1'), 'other'); "
              "print('held', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", script, backend.where],
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert store.owned(record) and store.live_status(record) == "running"
        assert store.acquire(record, "me") is None
    finally:
        child.kill()
        child.communicate()
    backend.after_kill(store, record)
    assert not store.owned(record)
    lease = store.acquire(record, "me")
    assert lease is not None and lease.epoch == 2
    store.release(lease)


def test_a_role_has_one_holder_until_it_is_given_back_or_runs_out(open_store: Open) -> None:
    one, two = open_store(), open_store()
    assert one.hold_role("reporter", "one", 30)
    assert one.hold_role("reporter", "one", 30)  # renewed
    assert not two.hold_role("reporter", "two", 30)
    assert one.hold_role("other job", "one", 30) and two.hold_role("third job", "two", 30)
    two.let_go_of_role("reporter", "two")  # not its own: nothing changes
    assert not two.hold_role("reporter", "two", 30)
    one.let_go_of_role("reporter", "one")
    assert two.hold_role("reporter", "two", 0.2)  # free at once
    assert not one.hold_role("reporter", "one", 30)
    time.sleep(0.3)  # two did not renew in time: its time ran out
    assert one.hold_role("reporter", "one", 30)
    assert not two.hold_role("reporter", "two", 30)


def test_run_ids_are_found_by_status_newest_first(open_store: Open) -> None:
    store = open_store()
    first, second = new_run(store, "r1"), new_run(store, "r2")
    new_run(store, "r3")
    store.append(first, [ev.RunFinished(run_id="r1", status="waiting", duration_s=1.0)])
    store.append(second, [ev.RunFinished(run_id="r2", status="waiting", duration_s=1.0)])
    assert store.run_ids(statuses=["waiting"]) == [(second.run_no, "r2"), (first.run_no, "r1")]
    assert store.run_ids(statuses=["success"]) == []


def test_questions_stay_open_until_answered(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    asked = ev.InterventionRequested(run_id="r1", step_id="a", plugin="noop", error="e",
                                     error_type="T", hint=None, attempts=1)
    store.append(record, [started("r1", "a"), asked])
    assert set(store.open_questions(record)) == {"a"}
    store.append(record, [ev.InterventionResolved(run_id="r1", step_id="a", action="skip",
                                                  by="someone", plugin="noop")])
    assert store.open_questions(record) == {}


def test_only_the_first_answer_to_a_question_counts(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    asked = ev.InterventionRequested(run_id="r1", step_id="a", plugin="noop", error="e",
                                     error_type="T", hint=None, attempts=1)
    store.append(record, [started("r1", "a"), asked])

    def answer(by: str, action: str = "skip") -> ev.InterventionResolved:
        return ev.InterventionResolved(run_id="r1", step_id="a", action=action,  # type: ignore[arg-type]
                                       by=by, plugin="noop", comment=f"said {by}")

    # recorded for the run's owner to log (it does not own the run): open no more
    first, won = store.append_decision(record, answer("alice"), request_seq=asked.seq,
                                       log=False)
    assert won and first.by == "alice"
    assert store.open_questions(record) == {}
    assert not any(isinstance(e, ev.InterventionResolved) for e in store.events(record))
    recorded = store.answers(record)[asked.seq]
    assert (recorded.by, recorded.action, recorded.comment) == ("alice", "skip", "said alice")
    # a second answer, logged or not, loses to it, and is told which one counts
    for log in (True, False):
        winner, won = store.append_decision(record, answer("bob", "abort"),
                                            request_seq=asked.seq, log=log)
        assert not won and (winner.by, winner.action) == ("alice", "skip")
    assert not any(isinstance(e, ev.InterventionResolved) for e in store.events(record))
    # a new question of the step is answered on its own; logged in the same write
    again = ev.InterventionRequested(run_id="r1", step_id="a", plugin="noop", error="e2",
                                     error_type="T", hint=None, attempts=2)
    store.append(record, [again])
    _, won = store.append_decision(record, answer("carol"), request_seq=again.seq)
    assert won
    [logged] = [e for e in store.events(record) if isinstance(e, ev.InterventionResolved)]
    assert (logged.by, logged.comment) == ("carol", "said carol")


def test_the_cache_keeps_what_a_step_returned_and_can_be_cleared(open_store: Open) -> None:
    from flowhost.catalog import Catalog
    from flowhost.spec_loading import parse_spec
    from flowhost.static import check

    plan = check(parse_spec("workflow_id: w\nsteps: [{id: a, plugin: noop}]\n"), Catalog(), {})
    step = plan.steps["a"]
    store = open_store()
    record = new_run(store)
    cache = store.step_cache()
    writer = store.writer(record, cache=cache)
    assert cache.lookup(step, {"value": 0}) is None
    cache.store(step, {"value": 0}, {"value": 1})
    writer(finished("r1", "a", {"value": 1}))
    writer.close()
    later = open_store().step_cache()
    assert later.lookup(step, {"value": 0}) == {"value": 1}
    assert later.lookup(step, {"value": 5}) is None
    assert store.clear_cache("noop") == 1
    assert open_store().step_cache().lookup(step, {"value": 0}) is None
    assert store.durations(["noop"]) == {"noop": [0.1]}


def test_a_failed_write_is_reported_by_the_writer_not_raised(open_store: Open,
                                                             backend: Backend) -> None:
    store = open_store()
    record = new_run(store)
    failures: list[str] = []
    with backend.block_writes():
        slow = open_store(busy_timeout=0.1)
        writer = slow.writer(slow.run("r1"))
        writer.on_failure = failures.append
        # (the run's end: written to the database at once by every backend)
        writer(ev.RunFinished(run_id="r1", status="failed", duration_s=0.0, message="",
                              workflow_id="w"))
        assert writer.failure is not None and "locked" in writer.failure
        assert failures == [writer.failure]
        writer.close()
    assert store.events(record) == []


def test_a_submission_is_recorded_once_per_request_id(open_store: Open) -> None:
    store = open_store()

    def submit(request_id: str, run_id: str) -> tuple[RunRecord, bool]:
        return store.submit_run(request_id=request_id, run_id=run_id, workflow_id="w",
                                spec_text="t", spec_path="submitted.yaml",
                                spec_redacted=False, overrides=[], cwd="/", total_steps=1)

    first, created = submit("req-1", "r1")
    assert created and first.status == "queued"
    again, created_again = submit("req-1", "r2")
    assert not created_again and again.run_id == "r1"
    other, created_other = submit("req-2", "r3")
    assert created_other and other.run_id == "r3"
    assert [r.run_id for r in store.runs()] == ["r3", "r1"]
    assert store.latest_resumable() is not None  # queued runs are unfinished


def test_runs_come_in_keyset_pages_newest_first(open_store: Open) -> None:
    store = open_store()
    for i in range(5):
        new_run(store, f"r{i}", "odd" if i % 2 else "even")
    page = store.runs_page(limit=2)
    assert [r.run_id for r in page] == ["r4", "r3"]
    page = store.runs_page(before=page[-1].run_no, limit=2)
    assert [r.run_id for r in page] == ["r2", "r1"]
    assert [r.run_id for r in store.runs_page(before=page[-1].run_no)] == ["r0"]
    assert [r.run_id for r in store.runs_page(workflow_id="odd")] == ["r3", "r1"]
    assert store.runs_page(status="success") == []


def test_steps_done_is_the_same_whether_the_run_goes_on_or_ended(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    store.append(record, [started("r1", "a"), finished("r1", "a")])
    assert store.steps_succeeded(record) == 1  # counted while it goes on
    store.append(record, [ev.RunFinished(run_id="r1", status="interrupted", duration_s=1)])
    assert store.steps_succeeded(record) == 1  # recorded when its process ended
    store.append(record, [ev.RunStarted(run_id="r1", workflow_id="w", description="",
                                        total_steps=2, steps=()),
                          started("r1", "b"), finished("r1", "b")])
    assert store.steps_succeeded(record) == 2  # resumed: counted again
    store.append(record, [ev.RunFinished(run_id="r1", status="success", duration_s=1)])
    assert store.steps_succeeded(record) == 2


def test_a_run_can_go_on_with_an_edited_spec(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    edited = store.replace_spec(record, spec_text="workflow_id: w\nsteps: []\n",
                                spec_redacted=True, total_steps=7)
    again = store.run(record.run_id)
    for seen in (edited, again):
        assert (seen.spec_text, seen.spec_redacted, seen.total_steps) == (
            "workflow_id: w\nsteps: []\n", True, 7)
        assert (seen.run_no, seen.workflow_id, seen.spec_path) == (
            record.run_no, record.workflow_id, record.spec_path)


def test_durations_are_kept_with_the_inputs_they_were_measured_with(open_store: Open) -> None:
    store = open_store()
    record = new_run(store)
    keys = {"a": "k-small", "b": "k-large"}
    writer = store.writer(record, inputs_key=keys.get)
    for step, seconds in (("a", 0.1), ("b", 9.0)):
        writer(ev.StepFinished(run_id="r1", step_id=step, plugin="noop", used_plugin="noop",
                               status="success", attempts=1, duration_s=seconds,
                               outputs={"value": 1}))
    writer.close()
    later = open_store()
    assert later.durations(["noop"]) == {"noop": [9.0, 0.1]}
    assert later.similar_durations([("noop", "k-small"), ("noop", "k-large"),
                                    ("noop", "k-never")]) == {
        ("noop", "k-small"): [0.1], ("noop", "k-large"): [9.0]}
