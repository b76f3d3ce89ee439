"""The daemon's metrics feed on a real state store: every committed event of the daemon's
runs counted once, whichever connection wrote it; a restarted feed counts nothing of the
past twice; runs that are not the daemon's are left out; a store that cannot be read makes
the daemon not ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowhost.daemon.journal import Journal
from flowhost.events import (
    AttemptStarted,
    Event,
    InterventionRequested,
    RunFinished,
    RunStarted,
    StepFinished,
)
from flowhost.metrics import Families, MetricsObserver
from flowhost.metrics import feed as feed_module
from flowhost.metrics.feed import JournalFeed
from flowhost.store import RunRecord, Store


def record(store: Store, run_id: str, *, daemon: bool = True) -> RunRecord:
    folder = store.state_dir / "runs" if daemon else store.state_dir.parent / "elsewhere"
    return store.create_run(run_id=run_id, workflow_id="wf", spec_text="", spec_path="x",
                            spec_redacted=False, overrides=[], cwd=str(folder / run_id),
                            total_steps=1, status="queued")


def step(run_id: str, plugin: str = "noop") -> list[Event]:
    return [AttemptStarted(run_id=run_id, step_id="a", plugin=plugin, attempt=1),
            StepFinished(run_id=run_id, step_id="a", plugin=plugin, used_plugin=plugin,
                         status="success", attempts=1, duration_s=0.01)]


def begin(run_id: str) -> RunStarted:
    return RunStarted(run_id=run_id, workflow_id="wf", description="", total_steps=1,
                      steps=())


def end(run_id: str, status: str = "success") -> RunFinished:
    return RunFinished(run_id=run_id, status=status,  # type: ignore[arg-type]
                       duration_s=0.1, workflow_id="wf")


class Daemonish:
    """A journal and a feed as the daemon has them; its writer is another connection."""

    def __init__(self, state: Path) -> None:
        self.journal = Journal(state)
        self.families = Families()
        self.feed = JournalFeed(self.journal, MetricsObserver(self.families), tick_s=3600)

    async def __aenter__(self) -> Daemonish:
        await self.journal.open()
        await self.feed.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.feed.close()
        await self.journal.close()

    def value(self, name: str, **labels: str) -> float | None:
        return self.families.registry.get_sample_value(name, labels)


async def test_each_committed_event_is_counted_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    writer = Store.open(state)
    try:
        async with Daemonish(state) as daemon:
            first = record(writer, "r1")
            writer.append(first, [begin("r1"), *step("r1")])
            other = record(writer, "local", daemon=False)  # a `flowhost run` in the same dir
            writer.append(other, [begin("local"), *step("local", "mine")])
            await daemon.feed.step()
            await daemon.feed.step()  # nothing new: nothing more
            assert daemon.value("flowhost_steps_total", plugin="noop", status="success") == 1
            assert daemon.value("flowhost_steps_total", plugin="mine", status="success") is None
            assert daemon.value("flowhost_runs_active") == 1
            second = record(writer, "r2")  # created and ended between two polls
            writer.append(second, [begin("r2"), *step("r2"), end("r2")])
            writer.append(first, [end("r1")])
            await daemon.feed.step()
            assert daemon.value("flowhost_steps_total", plugin="noop", status="success") == 2
            assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 2
            assert daemon.value("flowhost_runs_active") == 0
            assert daemon.feed.unready() is None
    finally:
        writer.close()


async def test_a_restarted_feed_counts_from_zero_and_keeps_the_open_questions(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    writer = Store.open(state)
    try:
        waiting = record(writer, "w1")
        asked = InterventionRequested(run_id="w1", step_id="a", plugin="deploy", error="e",
                                      error_type="E", hint=None, attempts=1)
        writer.append(waiting, [begin("w1"), *step("w1"), asked, end("w1", "waiting")])
        done = record(writer, "d1")
        writer.append(done, [begin("d1"), *step("d1"), end("d1")])
        for _ in range(2):  # the daemon's life, then the next one's
            async with Daemonish(state) as daemon:
                await daemon.feed.step()
                assert daemon.value("flowhost_steps_total", plugin="noop",
                                    status="success") is None
                assert daemon.value("flowhost_runs_waiting") == 1
                assert daemon.value("flowhost_interventions_waiting", plugin="deploy") == 1
        async with Daemonish(state) as daemon:
            writer.append(waiting, [begin("w1"), *step("w1"), end("w1")])
            daemon.feed.poke()
            await daemon.feed.step()
            assert daemon.value("flowhost_steps_total", plugin="noop", status="success") == 1
            assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 1
            assert daemon.value("flowhost_runs_waiting") == 0
    finally:
        writer.close()


async def test_a_store_that_cannot_be_read_makes_it_not_ready(tmp_path: Path) -> None:
    async with Daemonish(tmp_path / "state") as daemon:
        assert daemon.feed.unready() is None
        await daemon.journal.close()  # its thread is gone: every call fails
        daemon.feed.poke()
        await daemon.feed.step()
        why = daemon.feed.unready()
        assert why is not None and why.startswith("the state store cannot be read")
        await asyncio.sleep(0)


async def test_many_runs_between_two_polls_are_all_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    writer = Store.open(state)
    try:
        async with Daemonish(state) as daemon:
            for number in range(250):  # more than a page of runs
                run_id = f"r{number}"
                writer.append(record(writer, run_id), [begin(run_id), *step(run_id),
                                                       end(run_id)])
            await daemon.feed.step()
            assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 250
            assert daemon.feed.unready() is None
    finally:
        writer.close()


async def test_a_stopped_run_is_read_on_a_poke_or_a_sweep_not_every_tick(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    writer = Store.open(state)
    try:
        waiting = record(writer, "w1")
        writer.append(waiting, [begin("w1"), end("w1", "waiting")])
        monkeypatch.setattr(feed_module, "QUIET_S", 3600.0)
        async with Daemonish(state) as daemon:
            writer.append(waiting, [begin("w1"), *step("w1")])  # a worker took it again
            await daemon.feed.step()
            assert daemon.value("flowhost_runs_active") == 0  # not read on this tick
            monkeypatch.setattr(feed_module, "QUIET_S", 0.0)  # the sweep is due
            await daemon.feed.step()
            assert daemon.value("flowhost_runs_active") == 1
            assert daemon.value("flowhost_steps_total", plugin="noop", status="success") == 1
            monkeypatch.setattr(feed_module, "QUIET_S", 3600.0)
            writer.append(waiting, [*step("w1")])  # running now: read every tick
            await daemon.feed.step()
            assert daemon.value("flowhost_steps_total", plugin="noop", status="success") == 2
    finally:
        writer.close()
