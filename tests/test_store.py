"""The state store: event codec, schema, the checkpoint listener, faults of the state dir."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from flowhost import events as ev
from flowhost.catalog import Catalog
from flowhost.engine import Engine
from flowhost.events import EventBus
from flowhost.problems import StorageError, UserInputError
from flowhost.result import fold
from flowhost.spec_loading import parse_spec
from flowhost.static import check
from flowhost.store import RunRecord, Store, StoreListener, codec, estimate, read, steplog
from flowhost.store import listener as listener_module
from flowhost.store.estimate import inputs_key
from flowhost.store.rows import describe
from flowhost.store.schema import LATEST

CHECK = ev.CheckResult("files_exist", True, "ok: é \"quoted\"", 0.25, {"paths": ["a", "b"]})
SAMPLES: list[ev.Event] = [
    ev.RunStarted(run_id="r", workflow_id="w", description="d", total_steps=2,
                  steps=(("a", "noop", "first"), ("b", "echo", "")), resumed=True),
    ev.StepStarted(run_id="r", step_id="a", plugin="noop", purpose="p", index=1, total=2,
                   rerun=True),
    ev.AttemptStarted(run_id="r", step_id="a", plugin="noop", attempt=2, transport="grpc"),
    ev.StepProgress(run_id="r", step_id="a", fraction=0.5, message="half\nway"),
    ev.AttemptFailed(run_id="r", step_id="a", plugin="noop", attempt=1, error_type="X",
                     error_kind="transient", message="m", hint=None, duration_s=0.1,
                     traceback='Traceback (most recent call last):\n  File "p.py", line 3'),
    ev.RetryScheduled(run_id="r", step_id="a", plugin="noop", next_attempt=2, delay_s=1.5,
                      plugin_attempt=2, max_attempts=3),
    ev.FallbackChosen(run_id="r", step_id="a", plugin="noop", fallback="echo", reason="r",
                      index=1),
    ev.InterventionRequested(run_id="r", step_id="a", plugin="noop", error="e",
                             error_type="T", hint="h", attempts=3),
    ev.InterventionResolved(run_id="r", step_id="a", action="skip", outputs={"v": [1, None]},
                            by="policy"),
    ev.CacheRejected(run_id="r", step_id="a", plugin="noop", reason="files_exist: gone"),
    ev.CacheHit(run_id="r", step_id="a", plugin="noop"),
    ev.CacheMiss(run_id="r", step_id="b", plugin="echo"),
    ev.BreakerChanged(run_id="r", plugin="noop", state="half-open", failures=5),
    ev.StepFinished(run_id="r", step_id="a", plugin="noop", used_plugin="echo",
                    status="success", attempts=2, duration_s=0.5, outputs={"value": 1},
                    cached=True, validation=(CHECK,)),
    ev.StepFinished(run_id="r", step_id="b", plugin="echo", used_plugin="echo",
                    status="failed", attempts=1, duration_s=0.0, error="boom",
                    error_type="PermanentError", hint="fix it", reason=None),
    ev.SpecReloaded(run_id="r", path="/w.yaml", changed=("b",), rerun=("b", "c"),
                    added=("d",), removed=("e",)),
    ev.FinalValidationStarted(run_id="r", total_checks=1),
    ev.FinalValidationFinished(run_id="r", results=(CHECK,), test_results={"total": 3}),
    ev.RunFinished(run_id="r", status="failed", duration_s=2.0, message="why"),
]


def test_every_event_type_has_a_sample() -> None:
    assert {type(e).__name__ for e in SAMPLES} == set(codec.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_events_round_trip_into_the_same_dataclasses(event: ev.Event) -> None:
    kind, step_id, payload = codec.encode(event)
    assert kind == type(event).__name__
    assert step_id == getattr(event, "step_id", None)
    assert "run_id" not in payload
    assert codec.decode("r", kind, step_id, payload) == event


def test_decoding_skips_unknown_types_and_ignores_unknown_fields() -> None:
    assert codec.decode("r", "SomethingNewer", None, "{}") is None
    event = codec.decode("r", "RunFinished", None,
                         '{"ts": 1.0, "status": "success", "duration_s": 2, "new": 1}')
    assert event == ev.RunFinished(run_id="r", ts=1.0, status="success", duration_s=2)


def test_defaults_are_left_out_of_the_payload() -> None:
    _, _, payload = codec.encode(ev.StepFinished(
        run_id="r", step_id="a", plugin="p", used_plugin="p", status="success", attempts=1,
        duration_s=0.0, outputs={}))
    assert "error" not in payload and "cached" not in payload and '"outputs":{}' in payload


def _hot_events() -> list[ev.Event]:
    """A step's three events as the engine emits them, and each way they can be unusual."""
    started = ev.StepStarted("r", "a", "noop", "", 1, 2)
    attempt = ev.AttemptStarted("r", "a", "noop", 1)
    finished = ev.StepFinished("r", "a", "noop", "noop", "success", 1, 0.0012, {"value": 1})
    return [
        started, attempt, finished,
        ev.StepStarted("r", "é\"x", "n\u2028p", "why \"so\"\n", 2, 9, True),
        ev.StepStarted("r", "a", "noop", "", 1, 2, ts=float("nan")),
        ev.AttemptStarted("r", "a", "noop", 3, "grpc"),
        ev.AttemptStarted("r", "a", "noop", True),  # a bool is no int to the encoder
        ev.StepFinished("r", "a", "noop", "noop", "success", 1, 1e-7, None),
        ev.StepFinished("r", "a", "noop", "echo", "failed", 3, 2.5, error="boom",
                        error_type="X", hint="h"),
        ev.StepFinished("r", "a", "noop", "noop", "success", 1, 0.1, {"v": [1, "ü", None]},
                        validation=(CHECK,), cached=True),
        ev.StepFinished("r", "a", "noop", "noop", "skipped", 0, 0.0, reason="r",
                        redacted=True),
        ev.StepFinished("r", "a", "noop", "noop", "success", 1, float("inf"), {}),
    ]


@pytest.mark.parametrize("event", _hot_events(), ids=lambda e: type(e).__name__)
def test_the_rows_every_step_writes_are_those_of_the_generic_encoder(event: ev.Event) -> None:
    generic = codec.SPECS[type(event)].row
    try:
        expected: Any = generic(event, 7)
    except StorageError as exc:
        expected = str(exc)
    try:
        got: Any = codec.ROWS[type(event)](event, 7)
    except StorageError as exc:
        got = str(exc)
    assert got == expected


def test_a_hot_row_with_nan_in_its_outputs_names_the_field() -> None:
    event = ev.StepFinished("r", "a", "noop", "noop", "success", 1, 0.1,
                            {"x": {"y": float("nan")}})
    with pytest.raises(StorageError, match=r"outputs\.x\.y holds NaN"):
        codec.ROWS[ev.StepFinished](event, 1)


# -- the database --------------------------------------------------------------------------
def new_run(store: Store, run_id: str = "run-1", total: int = 2) -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id="w", spec_text="steps: []",
                            spec_path="/x/wf.yaml", spec_redacted=False, overrides=["a.b=1"],
                            cwd="/x", total_steps=total)


def test_open_creates_a_wal_database_at_the_latest_schema(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    conn = sqlite3.connect(tmp_path / "state" / "state.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == LATEST
    record = new_run(store)
    assert store.run("run-1") == record and record.overrides == ["a.b=1"]
    store.close()
    assert Store.open(tmp_path / "state").run("run-1").run_no == record.run_no  # reopened


def test_events_append_and_load_per_run(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first, second = new_run(store, "one"), new_run(store, "two")
    store.append(first, SAMPLES[:3])
    store.append(second, SAMPLES[3:5])
    store.append(first, SAMPLES[5:])
    assert store.events(first) == [_as(e, "one") for e in [*SAMPLES[:3], *SAMPLES[5:]]]
    assert store.events(second) == [_as(e, "two") for e in SAMPLES[3:5]]
    assert [r.run_id for r in store.runs()] == ["two", "one"]
    row = store.conn.execute("SELECT action, decided_by FROM interventions").fetchone()
    assert row == ("skip", "policy")
    assert store.run("one").status == "failed"  # RunFinished updates the run


def _as(event: ev.Event, run_id: str) -> ev.Event:
    kind, step_id, payload = codec.encode(event)
    decoded = codec.decode(run_id, kind, step_id, payload)
    assert decoded is not None
    return decoded


def test_an_unknown_run_is_an_input_error_with_a_suggestion(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    new_run(store, "20240101-000000-abcdef")
    with pytest.raises(UserInputError, match="did you mean '20240101-000000-abcdef'"):
        store.run("20240101-000000-abcdeg")


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("INSERT INTO schema_version VALUES (?, 0)", (LATEST + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(UserInputError, match=r"newer flowhost.*Upgrade flowhost"):
        Store.open(tmp_path)


@pytest.mark.parametrize("content", [b"this is not sqlite" * 200, b"\x00" * 4096])
def test_a_corrupt_database_is_an_input_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state.db").write_bytes(content)
    with pytest.raises(UserInputError, match=r"not a flowhost state database.*Move it away"):
        Store.open(tmp_path)


def _nan_outputs(step_id: str = "a") -> ev.StepFinished:
    return ev.StepFinished(run_id="r", step_id=step_id, plugin="p", used_plugin="p",
                           status="success", attempts=1, duration_s=0.0,
                           outputs={"data": {"x": [1.0, float("nan")]}})


def test_an_event_holding_nan_cannot_be_stored_and_the_database_is_fine(
        tmp_path: Path) -> None:
    """As found: a NaN in outputs was stored as JSON SQLite refuses, and the checkpoint
    failed saying the state database was corrupt, to be moved away (K2)."""
    store = Store.open(tmp_path)
    record = new_run(store)
    listener = StoreListener(store, record)
    listener(_as(SAMPLES[0], "run-1"))
    listener(_nan_outputs())
    assert listener.failure is not None
    assert "a StepFinished event cannot be stored: outputs.data.x.1 holds NaN" in (
        listener.failure)
    assert "corrupt" not in listener.failure and "Move it away" not in listener.failure
    with pytest.raises(StorageError, match=r"StepFinished .* outputs.data.x.1 holds NaN"):
        store.append(record, [_nan_outputs("b")])
    assert [type(e).__name__ for e in store.events(record)] == ["RunStarted"]
    store.append(record, SAMPLES[1:3])  # the database goes on as before
    assert len(store.events(record)) == 3


def test_a_statement_error_of_sqlite_is_not_called_a_corrupt_database(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(sqlite3.Error) as raised:
        store.conn.execute("SELECT json_extract('{\"x\": NaN}', '$.x')")
    said = describe(raised.value, store.path, 5.0)
    assert "malformed JSON" in said and "corrupt" not in said and "Move it away" not in said


def test_a_file_as_state_dir_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="is a file, not a directory"):
        Store.open(tmp_path / "file")


def test_a_database_locked_too_long_is_a_storage_error(tmp_path: Path) -> None:
    """Not bad input (exit 2): the store failed, and says what to do (the CLI exits 1)."""
    Store.open(tmp_path).close()
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        store = Store.open(tmp_path, busy_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"locked for more than 0.2s"):
            new_run(store)
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")


def test_two_stores_on_one_dir_write_concurrently(tmp_path: Path) -> None:
    one, two = Store.open(tmp_path), Store.open(tmp_path)
    a, b = new_run(one, "a"), new_run(two, "b")
    listeners = [StoreListener(one, a), StoreListener(two, b)]
    for index in range(50):
        for listener, run_id in zip(listeners, "ab", strict=True):
            listener(ev.StepFinished(run_id=run_id, step_id=f"s{index}", plugin="p",
                                     used_plugin="p", status="success", attempts=1,
                                     duration_s=0.0))
    assert len(one.events(two.run("b"))) == len(two.events(one.run("a"))) == 50


# -- the listener --------------------------------------------------------------------------
CHAIN = """
workflow_id: chain
steps:
  - {id: a, plugin: noop, inputs: {value: 1}}
  - {id: b, plugin: noop, inputs: {value: $a.value}}
  - {id: c, plugin: sleeper, inputs: {seconds: 0.05}, needs: [b]}
"""


async def run_with_store(store: Store, text: str = CHAIN, **engine: Any) -> tuple[
        str, StoreListener, list[ev.Event]]:
    plan = check(parse_spec(text), Catalog(), {})
    record = new_run(store, total=len(plan.steps))
    bus = EventBus()
    listener = StoreListener(store, record)
    bus.subscribe(listener)
    engine_ = Engine(plan, bus, run_id=record.run_id, env={}, **engine)
    listener.on_failure = engine_.cancel
    status = await engine_.run()
    listener.close()
    assert bus.history is not None
    return status, listener, bus.history


async def test_each_finished_step_is_durable_when_emit_returns(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    reader = Store.open(tmp_path)  # another process's view: the database and the step log
    seen: list[tuple[str, int]] = []

    def probe(event: ev.Event) -> None:
        if isinstance(event, ev.StepFinished):
            count = sum(1 for e in reader.events(record) if isinstance(e, ev.StepFinished)
                        and e.step_id == event.step_id)
            seen.append((event.step_id, count))

    plan = check(parse_spec(CHAIN), Catalog(), {})
    record = new_run(store, total=3)
    bus = EventBus()
    bus.subscribe(StoreListener(store, record))
    bus.subscribe(probe)  # another process's view, right after the store's listener
    assert await Engine(plan, bus, run_id=record.run_id, env={}).run() == "success"
    assert seen == [("a", 1), ("b", 1), ("c", 1)]


async def test_the_stored_events_fold_into_the_same_result(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    status, listener, history = await run_with_store(store)
    assert status == "success"
    loaded = store.events(listener.record)
    assert loaded == history
    assert fold(loaded) == fold(history)
    assert store.run(listener.record.run_id).status == "success"
    outputs = store.conn.execute("SELECT step_id, outputs FROM step_outputs ORDER BY step_id")
    assert [tuple(row) for row in outputs] == [("a", '{"value":2}'), ("b", '{"value":3}'),
                                               ("c", '{"slept":0.05,"label":""}')]


async def test_a_started_step_is_flushed_once_the_loop_is_idle(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    reader = Store.open(tmp_path)
    record = new_run(store, total=1)
    listener = StoreListener(store, record)
    listener(ev.StepStarted(run_id=record.run_id, step_id="a", plugin="p", purpose="",
                            index=1, total=1))
    assert reader.events(record) == []  # batched...
    await asyncio.sleep(0)
    assert [e.step_id for e in reader.events(record)] == ["a"]  # ...until the loop is idle
    listener.close()
    assert [e.step_id for e in reader.events(record)] == ["a"]
    assert not list((tmp_path / "steplog").iterdir())  # all in the database now


async def test_a_step_log_that_sits_still_goes_into_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener_module, "_BATCH_AGE_S", 0.05)
    store = Store.open(tmp_path)
    record = new_run(store, total=2)
    listener = StoreListener(store, record)
    listener(finished("a"))
    assert [p.name for p in (tmp_path / "steplog").iterdir()] == [f"{record.run_no}-"
                                                                  f"{record.run_no << 32}"]
    await asyncio.sleep(0.2)  # a long step comes next: the log goes in meanwhile
    assert not list((tmp_path / "steplog").iterdir())
    rows = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT step_id FROM events WHERE type = 'StepFinished'").fetchall()
    assert rows == [("a",)]
    listener.close()


BIG_CHAIN = "workflow_id: w\nsteps:\n" + "\n".join(
    f"  - {{id: s{i}, plugin: echo, inputs: {{text: '{'x' * 3000}{i}'}}"
    + (f", needs: [s{i - 1}]}}" if i else "}") for i in range(40))


def fill_the_disk(monkeypatch: pytest.MonkeyPatch, after_bytes: int) -> None:
    """The step log's disk is full once ``after_bytes`` were written to it."""
    written = [0]
    write = os.write

    def full(fd: int, data: Any) -> int:
        written[0] += len(data)
        if written[0] > after_bytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, data)

    monkeypatch.setattr(steplog.os, "write", full)


async def test_a_full_disk_fails_the_run_and_keeps_earlier_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path)
    fill_the_disk(monkeypatch, 40_000)
    status, listener, history = await run_with_store(store, BIG_CHAIN)
    assert status == "cancelled"
    assert listener.failure is not None and "disk is full" in listener.failure
    assert "Free some space" in listener.failure
    finished = [e for e in history if isinstance(e, ev.StepFinished) and e.status == "success"]
    assert 2 < len(finished) < 40
    saved = read(Store.open(tmp_path).events(listener.record))
    # Every checkpoint before the failure is intact; nothing after it was written.
    assert len(saved.finished) == len(finished) - 1
    assert set(saved.finished) < {e.step_id for e in finished}
    monkeypatch.undo()
    later = Store.open(tmp_path)  # who takes the run next moves the log into the database
    assert later.acquire(listener.record, "test") is not None
    assert not list((tmp_path / "steplog").iterdir())
    assert read(later.events(listener.record)).finished == saved.finished
    assert sqlite3.connect(tmp_path / "state.db").execute(
        "PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_a_full_database_at_the_end_keeps_every_logged_step(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    used = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {used + 12}")
    _, listener, _ = await run_with_store(store, BIG_CHAIN)
    assert listener.failure is not None and "disk is full" in listener.failure
    store.conn.execute("PRAGMA max_page_count = 1000000")
    saved = read(Store.open(tmp_path).events(listener.record))
    # The steps were logged as they finished; only the run's end could not be written.
    assert len(saved.finished) == 40 and not saved.done
    assert Store.open(tmp_path).acquire(listener.record, "test") is not None
    assert len(read(store.events(listener.record)).finished) == 40


# -- checkpoints and estimates -------------------------------------------------------------
def finished(step_id: str, status: str = "success") -> ev.StepFinished:
    return ev.StepFinished(run_id="r", step_id=step_id, plugin="p", used_plugin="p",
                           status=status, attempts=1, duration_s=0.0)  # type: ignore[arg-type]


def started(step_id: str) -> ev.StepStarted:
    return ev.StepStarted(run_id="r", step_id=step_id, plugin="p", purpose="", index=1,
                          total=3)


def request(step_id: str) -> ev.InterventionRequested:
    return ev.InterventionRequested(run_id="r", step_id=step_id, plugin="p", error="e",
                                    error_type="T", hint=None, attempts=1)


def test_checkpoint_of_an_interrupted_run() -> None:
    point = read([started("a"), finished("a"), started("b"), started("c"),
                  finished("c", "cancelled"),
                  ev.RunFinished(run_id="r", status="interrupted", duration_s=1)])
    assert set(point.finished) == {"a"}
    assert point.rerun() == {"b", "c"}
    assert point.status == "interrupted" and not point.done and not point.waiting


def test_a_cancelled_run_is_final() -> None:
    point = read([started("a"), finished("a", "cancelled"),
                  ev.RunFinished(run_id="r", status="cancelled", duration_s=1)])
    assert point.done


def test_checkpoint_of_a_waiting_run_and_its_decisions() -> None:
    events: list[ev.Event] = [started("a"), request("a"), started("b"), request("b"),
                              ev.RunFinished(run_id="r", status="waiting", duration_s=1)]
    point = read(events)
    assert set(point.waiting) == {"a", "b"} and point.rerun() == frozenset()
    events.append(ev.InterventionResolved(run_id="r", step_id="a", action="retry"))
    point = read(events)
    assert set(point.waiting) == {"b"} and point.decisions["a"].action == "retry"


def test_a_question_left_open_by_a_crash_is_still_asked() -> None:
    """Parked durably: the ladder is not climbed again, the question is asked again."""
    point = read([started("a"), started("b"), request("a")])  # killed, a prompt open
    assert set(point.waiting) == {"a"} and point.rerun() == {"b"}
    answered = read([started("a"), request("a"), ev.InterventionResolved(
        run_id="r", step_id="a", action="retry", by="user")])
    assert not answered.waiting and set(answered.decisions) == {"a"}
    again = read([started("a"), request("a"), ev.InterventionResolved(
        run_id="r", step_id="a", action="retry", by="user"), started("a")])
    assert not again.waiting and not again.decisions and again.rerun() == {"a"}


def test_estimate_takes_the_critical_path_and_the_parallelism() -> None:
    plan = check(parse_spec("""
workflow_id: w
steps:
  - {id: a, plugin: noop}
  - {id: b, plugin: sleeper, inputs: {seconds: 1}, needs: [a]}
  - {id: c, plugin: sleeper, inputs: {seconds: 1}, needs: [a]}
  - {id: d, plugin: echo, inputs: {text: x}, needs: [b, c]}
"""), Catalog(), {})
    history = {"noop": [1.0, 3.0, 2.0], "sleeper": [10.0], "echo": [6.0, 6.0]}
    assert estimate(plan, {}, max_parallel=8) is None
    assert estimate(plan, {"noop": [1.0], "sleeper": [1.0]}, max_parallel=8) is None  # echo?
    assert estimate(plan, history, max_parallel=8) == pytest.approx(2 + 10 + 6)
    assert estimate(plan, history, max_parallel=1) == pytest.approx(2 + 10 + 10 + 6)
    assert estimate(plan, history, max_parallel=8, done={"a", "b"}) == pytest.approx(16)


def test_an_estimate_takes_the_same_inputs_first_or_says_nothing() -> None:
    """Durations that disagree (more than 3x apart) mean the inputs decide: then only the
    same inputs' durations count, and a step without them means no estimate."""
    plan = check(parse_spec("""
workflow_id: w
steps:
  - {id: short, plugin: sleeper, inputs: {seconds: 0.5}}
  - {id: long, plugin: sleeper, inputs: {seconds: 30}, needs: [short]}
"""), Catalog(), {})
    varied = {"sleeper": [0.5, 30.0, 0.5]}
    assert estimate(plan, varied, max_parallel=8) is None
    assert estimate(plan, varied, max_parallel=8, similar={"short": [0.5]}) is None
    assert estimate(plan, varied, max_parallel=8,
                    similar={"short": [0.5], "long": [30.0, 31.0]}) == pytest.approx(31.0)
    alike = {"sleeper": [1.0, 2.0, 1.5]}
    assert estimate(plan, alike, max_parallel=8) == pytest.approx(3.0)
    assert inputs_key(plan.steps["short"]) != inputs_key(plan.steps["long"])


def test_steps_with_masked_outputs_run_again_as_far_back_as_a_rerun_needs() -> None:
    from flowhost.resumption import masked_but_needed

    plan = check(parse_spec("""
workflow_id: w
steps:
  - {id: d, plugin: echo, inputs: {text: x}}
  - {id: a, plugin: echo, inputs: {text: $d.text}}
  - {id: b, plugin: echo, inputs: {text: $a.text}}
  - {id: c, plugin: echo, inputs: {text: $a.text}}
  - {id: e, plugin: echo, inputs: {text: y}}
"""), Catalog(), {})

    def done(step_id: str, redacted: bool) -> ev.StepFinished:
        return ev.StepFinished("r", step_id, "echo", "echo", "success", 1, 0.1,
                               {"text": "***", "length": 3}, redacted=redacted)

    restored = {"d": done("d", True), "a": done("a", True), "b": done("b", False),
                "e": done("e", True)}  # c is still to run; e feeds nothing
    assert masked_but_needed(plan, restored) == {"a", "d"}
    assert masked_but_needed(plan, {**restored, "c": done("c", False)}) == set()
