"""The daemon's async reads of a PostgreSQL store (``flowhost.store.postgres.reads``) answer
as the store itself does, on a real server: runs, their live status, pages, journals, the
watched runs' new events in one statement; and several reads go on at once over the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from flowhost import events as ev
from flowhost.daemon import records
from flowhost.daemon.journal import Journal
from flowhost.problems import StorageError, UserInputError
from flowhost.store.postgres import PostgresStore
from flowhost.store.postgres.reads import AsyncReads
from flowhost.store.rows import RunRecord


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore.open(postgres_url)
    yield opened
    opened.close()


def _run(store: PostgresStore, run_id: str, workflow: str = "w") -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id=workflow, spec_text="t",
                            spec_path="/w.yaml", spec_redacted=False, overrides=[], cwd="/",
                            total_steps=2)


def _step(run_id: str, step: str) -> list[ev.Event]:
    return [ev.StepStarted(run_id, step, "noop", "", 1, 2),
            ev.StepFinished(run_id, step, "noop", "noop", "success", 1, 0.1, {"value": 1})]


def _reading(url: str, check: object) -> None:
    async def main() -> None:
        reads = await AsyncReads.open(url, busy_timeout=5.0, size=3)
        try:
            await check(reads)  # type: ignore[operator]
        finally:
            await reads.close()
    asyncio.run(main())


def test_runs_and_their_live_status_read_as_the_store_says(
        store: PostgresStore, postgres_url: str) -> None:
    owned, dead = _run(store, "owned"), _run(store, "dead")
    lease = store.acquire(owned, "me")
    assert lease is not None
    store.append(dead, _step("dead", "a"))

    async def check(reads: AsyncReads) -> None:
        assert await reads.run("owned") == (owned, "running")
        assert await reads.run("dead") == (dead, "interrupted")  # nobody runs it
        assert await reads.run("nope") is None
        assert await reads.run("bad\udcff") is None  # not UTF-8: no run has that id
        assert await reads.run("nul\0") is None
        page = await reads.page(before=None, limit=10, status=None, workflow_id=None)
        assert [(r.run_id, live, done) for r, live, done in page] == [
            ("dead", "interrupted", 1), ("owned", "running", 0)]
        assert [r.run_id for r, _, _ in await reads.page(
            before=dead.run_no, limit=10, status="running", workflow_id="w")] == ["owned"]
        assert await reads.page(before=None, limit=10, status=None,
                                workflow_id="other") == []
    _reading(postgres_url, check)
    store.release(lease)


def test_a_page_says_what_records_page_says(store: PostgresStore, postgres_url: str) -> None:
    for number in range(5):
        record = _run(store, f"p{number}", "w" if number % 2 else "v")
        store.append(record, _step(record.run_id, "a"))
    expected = records.page(store, before=None, limit=3, status="", workflow_id="")

    async def check(reads: AsyncReads) -> None:
        journal = Journal(store.path, store_url=postgres_url)
        journal.reads = reads
        assert await journal.page(None, 3, "", "") == expected
        found, more = await journal.page(None, 10, "", "w")
        assert [s.run_id for s in found] == ["p3", "p1"] and not more
    _reading(postgres_url, check)


def test_journals_and_the_watched_runs_new_events(store: PostgresStore,
                                                  postgres_url: str) -> None:
    one, two, quiet = _run(store, "one"), _run(store, "two"), _run(store, "quiet")
    store.append(one, _step("one", "a"))
    store.append(two, [*_step("two", "x"), *_step("two", "y")])

    async def check(reads: AsyncReads) -> None:
        assert await reads.events(one) == store.events(one)
        assert [e.seq for e in await reads.events(two, 2)] == [3, 4]
        assert await reads.last_seq(two) == 4 and await reads.last_seq(quiet) == 0
        found = await reads.watched([(one, 1), (two, 3), (quiet, 0)])
        assert [[e.seq for e in events] for events in found] == [[2], [4], []]
        assert found[1][0].run_id == "two"  # each event decoded with its own run's id
        assert await reads.watched([]) == []
        before = await reads.data_version()
        store.append(quiet, _step("quiet", "a"))
        assert await reads.data_version() != before  # a commit moves it
    _reading(postgres_url, check)


def test_the_daemons_result_of_a_run_is_the_same_read_either_way(
        store: PostgresStore, postgres_url: str) -> None:
    record = _run(store, "r")
    begun = ev.RunStarted("r", workflow_id="w", description="", total_steps=1,
                          steps=(("a", "noop", ""),))
    store.append(record, [begun, *_step("r", "a")])
    expected = records.result_json(store, "r")

    async def check(reads: AsyncReads) -> None:
        journal = Journal(store.path, store_url=postgres_url)
        journal.reads = reads
        assert await journal.result_json("r") == expected
        assert (await journal.find("r")).run_id == "r"
        for call in (journal.find, journal.result_json):
            with pytest.raises(records.NotFound, match="no run 'nope' in this daemon"):
                await call("nope")
    _reading(postgres_url, check)


def test_reads_go_on_at_once_over_the_pool(store: PostgresStore, postgres_url: str) -> None:
    """Three reads that each take 0.5 s on the server finish in about 0.5 s, not 1.5 s."""
    async def check(reads: AsyncReads) -> None:
        await asyncio.gather(*[reads._rows("SELECT 1") for _ in range(3)])  # all connected
        start = time.monotonic()
        await asyncio.gather(*[reads._rows("SELECT pg_sleep(0.5)") for _ in range(3)])
        assert time.monotonic() - start < 1.4
    _reading(postgres_url, check)


def test_a_connection_the_server_ended_is_a_storage_error_once(
        store: PostgresStore, postgres_url: str) -> None:
    async def main() -> None:
        reads = await AsyncReads.open(postgres_url, busy_timeout=1.0, size=1)
        try:
            rows = await reads._rows("SELECT pg_backend_pid()")
            await reads._rows("SELECT pg_terminate_backend(%s)", (rows[0][0],))
        except StorageError:
            pass  # (the pool's one connection ended itself)
        try:
            with pytest.raises(StorageError, match="postgresql:"):
                await reads._rows("SELECT pg_terminate_backend(pg_backend_pid())")
            assert await reads.last_seq(RunRecord.model_validate({
                "run_no": 10**9, "run_id": "x", "workflow_id": "w", "status": "running",
                "spec_text": "", "spec_path": "", "spec_redacted": False, "overrides": [],
                "cwd": "/", "total_steps": 0, "created_at": 0.0, "updated_at": 0.0,
                "finished_at": None, "pid": None})) == 0  # and the pool goes on
        finally:
            await reads.close()
    asyncio.run(main())


def test_an_unreachable_server_is_told_when_the_pool_opens(tmp_path: object) -> None:
    from postgres_server import free_port

    async def main() -> None:
        await AsyncReads.open(f"postgresql://flowhost@127.0.0.1:{free_port()}/none",
                              busy_timeout=1.0)
    with pytest.raises(UserInputError, match=r"cannot reach the PostgreSQL server .*refused"):
        asyncio.run(main())
