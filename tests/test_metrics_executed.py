"""The metrics feed of a replica on a shared store (``ExecutedFeed``), on a real state
store: it counts what its workers committed after it handed them a run, and what the
daemon process wrote itself; not what came before, nor what another process wrote (a
worker that found the run busy, a replica that took a waiting run over)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_metrics_feed import begin, end

from flowhost.daemon import executions, records
from flowhost.daemon.journal import Journal
from flowhost.events import (
    AttemptStarted,
    Event,
    InterventionRequested,
    StepFinished,
)
from flowhost.metrics import Families, MetricsObserver
from flowhost.metrics.executed import ExecutedFeed
from flowhost.store import RunRecord, Store

SPEC = "workflow_id: wf\nsteps:\n  - {id: a, plugin: noop}\n"


def record(store: Store, run_id: str) -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id="wf", spec_text=SPEC,
                            spec_path="x.yaml", spec_redacted=False, overrides=[],
                            cwd=str(store.state_dir / "runs" / run_id), total_steps=1,
                            status="queued")


def step(run_id: str, plugin: str, step_id: str = "a") -> list[Event]:
    return [AttemptStarted(run_id=run_id, step_id=step_id, plugin=plugin, attempt=1),
            StepFinished(run_id=run_id, step_id=step_id, plugin=plugin, used_plugin=plugin,
                         status="success", attempts=1, duration_s=0.01)]


def asked(run_id: str) -> InterventionRequested:
    return InterventionRequested(run_id=run_id, step_id="a", plugin="noop", error="e",
                                 error_type="E", hint=None, attempts=1)


class Replica:
    """A journal, its feed, and what the supervisor notes; the workers (and the other
    replicas) write through another connection."""

    def __init__(self, state: Path) -> None:
        self.journal = Journal(state)
        self.families = Families()
        self.feed = ExecutedFeed(self.journal, MetricsObserver(self.families), tick_s=3600)

    async def note(self, fn: object, *args: str) -> None:
        await self.journal.call(fn, *args)  # type: ignore[arg-type]

    async def poll(self) -> None:
        self.feed.poke()
        await self.feed.step()

    def value(self, name: str, **labels: str) -> float:
        return self.families.registry.get_sample_value(name, labels) or 0.0

    def steps(self, plugin: str) -> float:
        return self.value("flowhost_steps_total", plugin=plugin, status="success")


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[tuple[Replica, Store]]:
    state = tmp_path / "state"
    writer = Store.open(state)
    replica = Replica(state)
    await replica.journal.open()
    await replica.feed.start()
    try:
        yield replica, writer
    finally:
        await replica.feed.close()
        await replica.journal.close()
        writer.close()


async def test_what_its_worker_committed_after_the_hand_off_counts_once(
        replica: tuple[Replica, Store]) -> None:
    daemon, writer = replica
    taken = record(writer, "r1")
    writer.append(taken, [begin("r1"), *step("r1", "before")])  # a replica that died
    other = record(writer, "r2")
    writer.append(other, [begin("r2"), *step("r2", "elsewhere")])  # another's, live
    await daemon.note(executions.handed, "r1")
    await daemon.note(executions.started, "r1")
    writer.append(taken, [begin("r1")])
    await daemon.poll()
    assert daemon.value("flowhost_runs_active") == 1
    writer.append(taken, [*step("r1", "after", "b"), end("r1")])
    await daemon.note(executions.let_go, "r1", "success")
    await daemon.poll()
    await daemon.poll()  # nothing new: nothing more
    assert daemon.steps("after") == 1
    assert daemon.steps("before") == 0 and daemon.steps("elsewhere") == 0
    assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 1
    assert daemon.value("flowhost_runs_active") == 0
    assert daemon.feed.unready() is None


async def test_a_run_handed_started_and_ended_between_two_polls_counts_once(
        replica: tuple[Replica, Store]) -> None:
    daemon, writer = replica
    for number in range(3):
        run_id = f"r{number}"
        taken = record(writer, run_id)
        await daemon.note(executions.handed, run_id)
        await daemon.note(executions.started, run_id)
        writer.append(taken, [begin(run_id), *step(run_id, "noop"), end(run_id)])
        await daemon.note(executions.let_go, run_id, "success")
    await daemon.poll()
    await daemon.poll()
    assert daemon.steps("noop") == 3
    assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 3


async def test_a_worker_that_found_the_run_busy_counts_nothing_of_it(
        replica: tuple[Replica, Store]) -> None:
    daemon, writer = replica
    taken = record(writer, "r1")
    await daemon.note(executions.handed, "r1")
    writer.append(taken, [begin("r1"), *step("r1", "theirs")])  # its owner, meanwhile
    await daemon.poll()
    writer.append(taken, [end("r1")])
    await daemon.note(executions.let_go, "r1", "busy")
    await daemon.poll()
    assert daemon.steps("theirs") == 0
    assert daemon.value("flowhost_runs_total", workflow="wf", status="success") == 0
    assert daemon.value("flowhost_runs_active") == 0


async def test_the_daemons_own_writes_count_and_a_run_taken_elsewhere_is_forgotten(
        replica: tuple[Replica, Store]) -> None:
    daemon, writer = replica
    record(writer, "queued")
    await daemon.journal.call(records.finish, "queued", "cancelled", "no more")
    waiting = record(writer, "w1")
    await daemon.note(executions.handed, "w1")
    await daemon.note(executions.started, "w1")
    writer.append(waiting, [begin("w1"), asked("w1"), end("w1", "waiting")])
    await daemon.note(executions.let_go, "w1", "waiting")
    await daemon.poll()
    assert daemon.value("flowhost_runs_total", workflow="wf", status="cancelled") == 1
    assert daemon.value("flowhost_runs_waiting") == 1
    assert daemon.value("flowhost_interventions_waiting", plugin="noop") == 1
    await daemon.journal.call(records.decide, "w1", "a", "retry", None, "", "ann")
    await daemon.poll()
    assert daemon.value("flowhost_manual_interventions_total", plugin="noop",
                        action="retry") == 1
    assert daemon.value("flowhost_interventions_waiting", plugin="noop") == 0
    assert daemon.value("flowhost_runs_waiting") == 1  # parked here until it goes on
    writer.append(waiting, [begin("w1"), *step("w1", "noop")])  # another replica took it
    await daemon.poll()
    assert daemon.value("flowhost_runs_waiting") == 0
    assert daemon.value("flowhost_runs_active") == 0
    assert daemon.steps("noop") == 0
