"""The step log (``flowhost.store.steplog``): torn and damaged files, a file of another run,
readers while the owner moves rows into the database, and who moves what a dead owner left."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from flowhost import events as ev
from flowhost.store import Store, StoreListener, codec, read, steplog
from flowhost.store import listener as listener_module
from flowhost.store.rows import RunRecord


def new_run(store: Store, run_id: str = "r1") -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id="w", spec_text="", spec_path="w.yaml",
                            spec_redacted=False, overrides=[], cwd="/", total_steps=1)


def finished(step_id: str) -> ev.StepFinished:
    return ev.StepFinished("r1", step_id, "p", "p", "success", 1, 0.0, {"value": step_id})


def started(step_id: str) -> ev.StepStarted:
    return ev.StepStarted(run_id="r1", step_id=step_id, plugin="p", purpose="", index=1,
                          total=1)


def logged(tmp_path: Path, record: RunRecord, steps: int) -> Path:
    """A log of ``steps`` checkpoints, as an owner that died would leave it."""
    log = steplog.StepLog(tmp_path / "steplog", record.run_no, record.run_id)
    low = record.run_no << 32
    for i in range(steps):
        log.append([*codec.ROWS[ev.StepStarted](started(f"s{i}"), low + 2 * i),
                    *codec.ROWS[ev.StepFinished](finished(f"s{i}"), low + 2 * i + 1)])
    log.close()
    [path] = (tmp_path / "steplog").iterdir()
    return path


def test_a_dead_owners_log_is_read_and_moved_by_the_next_owner(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    record = new_run(store)
    path = logged(tmp_path, record, 3)
    assert list(read(Store.open(tmp_path).events(record)).finished) == ["s0", "s1", "s2"]
    assert store.next_seq(record) == 6 and store.steps_succeeded(record) == 3
    assert store.acquire(record, "me") is not None
    assert not path.exists()
    assert list(read(store.events(record)).finished) == ["s0", "s1", "s2"]
    assert store.next_seq(record) == 6


@pytest.mark.parametrize("cut", [1, 7, 30, -9, -1])
def test_a_group_torn_by_a_crash_is_not_part_of_the_log(tmp_path: Path, cut: int) -> None:
    store = Store.open(tmp_path)
    record = new_run(store)
    path = logged(tmp_path, record, 3)
    data = path.read_bytes()
    last = data.rindex(b"\n", 0, len(data) - 1)
    group = data.rindex(b"\n#", 0, last) + 1  # where the last group's lines begin
    group = data.index(b"\n", group) + 1
    path.write_bytes(data[:group + cut] if cut > 0 else data[:len(data) + cut])
    assert list(read(store.events(record)).finished) == ["s0", "s1"]


def test_a_damaged_group_ends_the_log_there(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    record = new_run(store)
    path = logged(tmp_path, record, 3)
    data = bytearray(path.read_bytes())
    at = data.index(b'"value":"s1"')
    data[at + 10] = ord("7")  # s1's outputs, changed on the disk
    path.write_bytes(bytes(data))
    assert list(read(store.events(record)).finished) == ["s0"]


def test_a_log_of_another_run_is_never_mixed_in(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    record = new_run(store)
    other = RunRecord(**{**record.model_dump(), "run_id": "a-run-a-restored-backup-forgot"})
    path = logged(tmp_path, other, 2)
    assert store.events(record) == []
    assert store.acquire(record, "me") is not None
    assert not path.exists() and store.events(record) == []


def test_the_database_and_the_log_make_one_run_without_gaps_or_doubles() -> None:
    row: steplog.Row = (1, "StepStarted", "a", "{}")
    stored: list[steplog.Row] = [(5, "t", "a", "{}"), (6, "t", "a", "{}")]
    logged_rows: list[steplog.Row] = [(6, "t", "a", "{}"), (7, "t", None, "{}"),
                                      (9, "t", "b", "{}")]
    assert steplog.merged(stored, logged_rows, 5) == [*stored, (7, "t", None, "{}")]
    assert steplog.merged([], [row], 1) == [row]
    assert steplog.merged([], [row], 2) == []  # (before the cursor)
    assert steplog.merged([], [(3, *row[1:])], 1) == []  # a gap: rows 1 and 2 are missing


async def test_a_run_level_event_logged_reads_back_without_a_step(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    record = new_run(store)
    listener = StoreListener(store, record)
    listener(ev.BreakerChanged(run_id="r1", plugin="p", state="open", failures=3))
    listener(finished("a"))  # the pending breaker event goes into the log with it
    log = tmp_path / "steplog" / f"{record.run_no}-{record.run_no << 32}"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # outputs are no other user's business
    assert [type(e).__name__ for e in Store.open(tmp_path).events(record)] == [
        "BreakerChanged", "StepFinished"]
    listener.close()


async def test_readers_see_a_whole_prefix_while_the_owner_moves_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener_module, "_BATCH_ROWS", 4)  # a move every 16 rows
    store = Store.open(tmp_path)
    record = new_run(store)
    listener = StoreListener(store, record)
    steps = 300
    done = threading.Event()
    seen: list[list[int]] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            other = Store.open(tmp_path)
            while not done.is_set():
                seen.append([e.seq for e in other.events(record)])
            seen.append([e.seq for e in other.events(record)])
        except BaseException as exc:  # (reported by the test's thread)
            failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(steps):
            listener(started(f"s{i}"))
            listener(finished(f"s{i}"))
    finally:
        listener.close()
        done.set()
        thread.join(30)
    assert not failures
    assert len(seen) > 3
    longest = 0
    for seqs in seen:
        assert seqs == list(range(1, len(seqs) + 1))  # a prefix: no gap, no double
        assert len(seqs) >= longest  # and never less than a reader saw before
        longest = len(seqs)
    assert seen[-1] == list(range(1, 2 * steps + 1))
    assert not list((tmp_path / "steplog").iterdir())
