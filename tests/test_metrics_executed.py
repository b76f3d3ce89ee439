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
    AttemptFailed,
    AttemptStarted,
    Event,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
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


# -- hand-offs between replicas: the windows the workers report ---------------------------

COUNTERS = ("flowhost_steps_total", "flowhost_step_attempts_total", "flowhost_runs_total",
            "flowhost_retries_total")


def counted(families: Families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the counters, by name and labels (zeros left out)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in families.registry.collect():
        for sample in family.samples:
            if sample.name in COUNTERS and sample.value:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def summed(*replicas: Replica) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    total: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for replica in replicas:
        for key, value in counted(replica.families).items():
            total[key] = total.get(key, 0.0) + value
    return total


def journal_counts(store: Store, taken: RunRecord) -> dict[tuple[str, tuple[tuple[str, str],
                                                                          ...]], float]:
    """What one observer of the run's whole journal counts: each event once."""
    families = Families()
    observer = MetricsObserver(families)
    for event in store.events(taken):
        observer(event)
    return counted(families)


def failed_attempt(run_id: str, plugin: str, step_id: str) -> list[Event]:
    return [AttemptStarted(run_id=run_id, step_id=step_id, plugin=plugin, attempt=1),
            AttemptFailed(run_id=run_id, step_id=step_id, plugin=plugin, attempt=1,
                          error_kind="transient", message="m", error_type="E", hint=None,
                          duration_s=0.01),
            RetryScheduled(run_id=run_id, step_id=step_id, plugin=plugin, next_attempt=2,
                           delay_s=0.1)]


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica, Store]]:
    """Two replicas' feeds on one store, and a connection that writes as their workers."""
    state = tmp_path / "state"
    writer = Store.open(state)
    first, second = Replica(state), Replica(state)
    for replica in (first, second):
        await replica.journal.open()
        await replica.feed.start()
    try:
        yield first, second, writer
    finally:
        for replica in (first, second):
            await replica.feed.close()
            await replica.journal.close()
        writer.close()


async def test_a_worker_frozen_past_its_lease_counts_only_what_it_said_it_committed(
        two: tuple[Replica, Replica, Store]) -> None:
    # The first replica's worker commits a and a failed attempt of b, says so, starts b
    # again and freezes; its lease runs out and the second replica's worker takes the run
    # over and runs b and c, while the first still believes its worker executes the run.
    first, second, writer = two
    taken = record(writer, "r1")
    await first.note(executions.handed, "r1")
    await first.note(executions.started, "r1", 0)
    writer.append(taken, [begin("r1"), *step("r1", "p", "a"), *failed_attempt("r1", "p", "b")])
    told = writer.next_seq(taken)
    await first.note(executions.committed, "r1", told)
    writer.append(taken, [AttemptStarted(run_id="r1", step_id="b", plugin="p", attempt=2)])
    await first.poll()
    assert first.value("flowhost_retries_total", plugin="p") == 1
    await second.note(executions.handed, "r1")
    await second.note(executions.started, "r1", writer.next_seq(taken))
    writer.append(taken, [begin("r1"), *step("r1", "p", "b"), *step("r1", "p", "c"),
                          end("r1")])
    await first.poll()  # (the first's worker said nothing more: none of it is the first's)
    await second.note(executions.let_go, "r1", "success", None, writer.next_seq(taken))
    await second.poll()
    assert first.steps("p") == 1 and second.steps("p") == 2
    # it thaws, its writes fail (the lease is lost): it says what it had told
    await first.note(executions.let_go, "r1", "interrupted", 0, told)
    await first.poll()
    await second.poll()
    assert first.steps("p") == 1 and second.steps("p") == 2
    assert summed(first, second) == journal_counts(writer, taken)
    assert first.value("flowhost_runs_active") == 0
    assert second.value("flowhost_runs_active") == 0
    assert second.value("flowhost_runs_total", workflow="wf", status="success") == 1


async def test_what_the_last_owner_wrote_after_the_hand_off_is_its_own(
        two: tuple[Replica, Replica, Store]) -> None:
    # The second replica hands the run to its worker while the first's still finishes a
    # step (the worker then waits for the lease); the first's worker ends, and says up to
    # where; the second's takes the lease after that, and says from where.
    first, second, writer = two
    taken = record(writer, "r1")
    await first.note(executions.handed, "r1")
    await first.note(executions.started, "r1", 0)
    writer.append(taken, [begin("r1"), *step("r1", "p", "a")])
    await second.note(executions.handed, "r1")
    writer.append(taken, [*failed_attempt("r1", "p", "b"), *step("r1", "p", "b"),
                          end("r1", "interrupted")])
    upto = writer.next_seq(taken)
    await second.poll()
    await second.note(executions.started, "r1", upto)
    writer.append(taken, [begin("r1"), *step("r1", "p", "c"), end("r1")])
    await first.note(executions.let_go, "r1", "interrupted", 0, upto)
    await second.note(executions.let_go, "r1", "success", upto, writer.next_seq(taken))
    await first.poll()
    await second.poll()
    assert first.steps("p") == 2 and second.steps("p") == 1
    assert summed(first, second) == journal_counts(writer, taken)


async def test_what_a_worker_wrote_to_a_run_it_found_finished_counts_once(
        two: tuple[Replica, Replica, Store]) -> None:
    # (settling the run's answers, say, before it finds there is nothing left to do)
    first, second, writer = two
    taken = record(writer, "r1")
    writer.append(taken, [begin("r1"), asked("r1")])
    await first.note(executions.handed, "r1")
    after = writer.next_seq(taken)
    writer.append(taken, [InterventionResolved(run_id="r1", step_id="a", action="abort",
                                               by="ann", plugin="noop"),
                          end("r1", "aborted")])
    await first.note(executions.let_go, "r1", "done", after, writer.next_seq(taken))
    await first.poll()
    await second.poll()
    assert first.value("flowhost_manual_interventions_total", plugin="noop",
                       action="abort") == 1
    assert first.value("flowhost_runs_total", workflow="wf", status="aborted") == 1
    assert summed(first, second) == journal_counts(writer, taken)


async def test_a_replica_that_starts_restores_the_runs_that_wait_without_counting(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state) as writer:
        waiting = record(writer, "w1")
        writer.append(waiting, [begin("w1"), *failed_attempt("w1", "noop", "a"),
                                asked("w1"), end("w1", "waiting")])
    replica = Replica(state)
    await replica.journal.open()
    await replica.feed.start()
    try:
        assert replica.feed.reporter is True  # (its store is its own)
        assert replica.value("flowhost_runs_waiting") == 1
        assert replica.value("flowhost_interventions_waiting", plugin="noop") == 1
        assert replica.value("flowhost_retries_total", plugin="noop") == 0
        await replica.journal.call(records.decide, "w1", "a", "skip", None, "", "ann")
        await replica.poll()
        assert replica.value("flowhost_manual_interventions_total", plugin="noop",
                             action="skip") == 1
        assert replica.value("flowhost_interventions_waiting", plugin="noop") == 0
    finally:
        await replica.feed.close()
        await replica.journal.close()
