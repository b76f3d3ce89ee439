"""Several ``flowhost serve`` replicas on one PostgreSQL store: each one's ``/metrics``
count what it executed, so that sums over the replicas count every run and every step
once (issue 15), also when one is SIGKILLed mid-run and another takes its run over (the
survivor counts the steps it executed, not those finished before the kill)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from postgres_server import flowhost_cli as run_flowhost
from prometheus_client.parser import text_string_to_metric_families
from test_store_postgres_daemon import Serve, serve

from flowhost.metrics.waiting import ROLE_SECONDS
from flowhost.store.postgres import PostgresStore

__all__ = ["serve"]  # (the fixture: every daemon it starts is stopped)

METRICS = re.compile(r"flowhost serve: metrics on (?P<url>http://\S+/metrics)")
STEPS = 3


class Replica:
    def __init__(self, proc: subprocess.Popen[str], address: str, log: Path) -> None:
        self.proc, self.address, self.log = proc, address, log
        found = METRICS.search(log.read_text())
        assert found is not None, log.read_text()
        self.metrics = found["url"]

    def totals(self) -> dict[str, float]:
        """flowhost_runs_total and flowhost_steps_total, summed over their labels."""
        with urllib.request.urlopen(self.metrics, timeout=10) as answer:
            text = answer.read().decode()
        sums = {"flowhost_runs_total": 0.0, "flowhost_steps_total": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in sums:
                    sums[sample.name] += sample.value
        return sums


@pytest.fixture
def replica(serve: Serve, tmp_path: Path) -> Callable[..., Replica]:
    """``replica()``: a daemon on the test's database (``serve``: stopped at the end), with
    metrics on a free port; all with the same state dir path, so that where a run's
    workdir lies says nothing of who executed it."""
    started = 0

    def start(*args: str) -> Replica:
        nonlocal started
        proc, address = serve(*args)
        started += 1
        return Replica(proc, address, tmp_path / f"daemon-{started - 1}.log")

    return start


StartReplica = Callable[..., Replica]


def _submit(spec: Path, address: str, cwd: Path) -> str:
    done = run_flowhost("submit", str(spec), "--server", address, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _wait_finished(url: str, ids: list[str], timeout: float = 60) -> None:
    with PostgresStore.open(url, create=False) as store:
        deadline = time.monotonic() + timeout
        while True:
            statuses = [store.run(run_id).status for run_id in ids]
            if all(status == "success" for status in statuses):
                return
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)


def _chain(workflow: str, journal: Path, *, a: float, b: float) -> str:
    """Steps a, b (each taking the seconds given) and c, each writing to ``journal`` when
    it begins and ends."""
    return f"""\
        workflow_id: {workflow}
        steps:
          - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: a, seconds: {a}}}}}
          - id: b
            plugin: journal
            inputs: {{journal: '{journal}', label: b, seconds: {b}, value: $a.value}}
          - {{id: c, plugin: journal, inputs: {{journal: '{journal}', label: c,
               value: $b.value}}}}
        """


def _wait_for(journal: Path, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while line not in (journal.read_text() if journal.exists() else ""):
        assert time.monotonic() < deadline, f"no '{line}' in the journal"
        time.sleep(0.05)


def _settled(replicas: list[Replica], expected: dict[str, float],
             timeout: float = 10) -> list[dict[str, float]]:
    """Every replica's totals, once their sums reach ``expected`` (the metrics lag the
    journal by a tick) and stay there a moment; or as they are when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        totals = [r.totals() for r in replicas]
        sums = {name: sum(t[name] for t in totals) for name in expected}
        if sums == expected:
            time.sleep(1.0)  # nothing more comes in late (a double count would)
            return [r.totals() for r in replicas]
        if time.monotonic() > deadline:
            return totals
        time.sleep(0.2)


def test_the_replicas_metrics_sum_to_each_run_and_step_once(
        replica: StartReplica, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    runs = 12
    replicas = [replica("--max-runs", "2") for _ in range(3)]
    steps = "".join(f"  - {{id: s{n}, plugin: sleeper, inputs: {{seconds: 0.15}}}}\n"
                    for n in range(STEPS))
    spec = write_spec(f"workflow_id: shared\nsteps:\n{steps}")
    # round-robin: each replica queues its own at once, and the others claim what it has
    # no slot for (a run queued on two of them: one worker owns it, the other's is busy)
    ids = [_submit(spec, replicas[n % 3].address, tmp_path) for n in range(runs)]
    _wait_finished(postgres_url, ids)
    expected = {"flowhost_runs_total": float(runs),
                "flowhost_steps_total": float(runs * STEPS)}
    totals = _settled(replicas, expected)
    sums = {name: sum(t[name] for t in totals) for name in expected}
    assert sums == expected, totals
    assert sum(t["flowhost_runs_total"] > 0 for t in totals) > 1, totals
    for each in totals:  # a replica's steps are those of the runs it executed
        assert each["flowhost_steps_total"] == STEPS * each["flowhost_runs_total"], totals


def test_the_replica_that_takes_a_run_over_counts_only_what_it_executed(
        replica: StartReplica, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    spec = write_spec(_chain("taken", journal, a=3, b=3))
    first = replica("--max-runs", "1")
    run_id = _submit(spec, first.address, tmp_path)
    _wait_for(journal, "begin a")
    # The second lives while the first executes a (its feed would count a, were it to
    # follow every run of the store or of its state dir path): it owns no run, so it
    # restores and counts nothing of it.
    second = replica("--max-runs", "1")
    _wait_for(journal, "begin b")
    # a, on the first (the metrics lag the journal by a tick)
    assert _settled([first, second], {"flowhost_runs_total": 0.0,
                                      "flowhost_steps_total": 1.0}) == [
        {"flowhost_runs_total": 0.0, "flowhost_steps_total": 1.0},
        {"flowhost_runs_total": 0.0, "flowhost_steps_total": 0.0}]
    first.proc.kill()  # SIGKILL mid-way through b: its worker dies with it
    first.proc.communicate()
    _wait_finished(postgres_url, [run_id])
    # (with the same state dir path, the second found the run at its start, as another
    # process's to go on with once let go of; on another path it would claim it)
    totals = _settled([second], {"flowhost_runs_total": 1.0, "flowhost_steps_total": 2.0})
    # b (again, it had not finished) and c; a finished before the kill, on the first
    assert totals == [{"flowhost_runs_total": 1.0, "flowhost_steps_total": 2.0}]
    ended = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("end")]
    assert ended.count("a") == 1 and "c" in ended


# -- hand-offs, and the runs that wait ------------------------------------------------------

Counted = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PERSON = ("workflow_id: person\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
          "intervention, message: needs a person}\n")


def _scrape(replica: Replica) -> Counted:
    """Every sample of the replica's /metrics that is not zero, by name and labels."""
    with urllib.request.urlopen(replica.metrics, timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.value}


def _counters(found: Counted) -> Counted:
    return {key: value for key, value in found.items() if key[0].endswith("_total")}


def _summed(replicas: list[Replica], only: Callable[[Counted], Counted] = _counters
            ) -> Counted:
    total: Counted = {}
    for replica in replicas:
        for key, value in only(_scrape(replica)).items():
            total[key] = total.get(key, 0.0) + value
    return total


def _journal_counts(url: str, run_id: str) -> Counted:
    """What one observer of the run's whole journal counts: each committed event once."""
    from flowhost.metrics import Families, MetricsObserver

    families = Families()
    observer = MetricsObserver(families)
    with PostgresStore.open(url, create=False) as store:
        for event in store.events(store.run(run_id)):
            observer(event)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families.registry.collect() for sample in family.samples
            if sample.value and sample.name.endswith("_total")}


def _workers_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):  # a process that ended meanwhile
            continue
        if int(fields[1]) == pid and b"flowhost.daemon.worker" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_run_taken_over_from_a_frozen_worker_counts_once_over_the_replicas(
        replica: StartReplica, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    # The first replica's worker freezes (SIGSTOP) mid-run: its lease runs out (30 s), the
    # second replica takes the run over and finishes it, while the first still believes
    # its worker executes it; then the frozen worker goes on, and its writes fail. Summed
    # over both, the counters are the run's journal's, each event once.
    journal = tmp_path / "journal.txt"
    spec = write_spec(_chain("frozen", journal, a=0, b=2))
    first = replica("--max-runs", "1")
    run_id = _submit(spec, first.address, tmp_path)
    _wait_for(journal, "begin b")
    time.sleep(0.5)  # (the worker says what it committed every 0.1 s)
    (worker,) = _workers_of(first.proc.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        second = replica("--max-runs", "1")
        _wait_finished(postgres_url, [run_id], timeout=90)
    finally:
        os.kill(worker, signal.SIGCONT)
    expected = _journal_counts(postgres_url, run_id)
    assert expected[("flowhost_runs_total", (("status", "success"),
                                             ("workflow", "frozen")))] == 1
    _until(lambda: _summed([first, second]) == expected, 30,
           f"{_summed([first, second])} != {expected}")
    time.sleep(1.0)  # nothing more comes in late (a double count would)
    assert _summed([first, second]) == expected
    steps = {r: _counters(_scrape(r)).get(("flowhost_steps_total", (
        ("plugin", "journal"), ("status", "success"))), 0.0) for r in (first, second)}
    assert steps == {first: 1.0, second: 2.0}  # a on the first; b and c on the second


def _waiting(replica: Replica) -> tuple[float, float]:
    found = _scrape(replica)
    return (found.get(("flowhost_runs_waiting", ()), 0.0),
            found.get(("flowhost_interventions_waiting", (("plugin", "fail"),)), 0.0))


def test_the_runs_that_wait_are_reported_once_by_the_replicas_also_after_restarts(
        replica: StartReplica, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    first = replica()
    run_id = _submit(write_spec(PERSON), first.address, tmp_path)
    with PostgresStore.open(postgres_url, create=False) as store:
        _until(lambda: store.run(run_id).status == "waiting", 60, "the run never waited")
    _until(lambda: _waiting(first) == (1.0, 1.0), 10, f"first: {_waiting(first)}")
    second = replica()
    time.sleep(3.0)  # (a replica looks at the waiting runs every 2 s)
    assert [_waiting(r) for r in (first, second)] == [(1.0, 1.0), (0.0, 0.0)]
    first.proc.send_signal(signal.SIGTERM)  # the one that reports them goes
    first.proc.communicate(timeout=60)
    _until(lambda: _waiting(second) == (1.0, 1.0), 10, f"second: {_waiting(second)}")
    restored = _scrape(second)
    assert restored[("flowhost_intervention_oldest_wait_seconds", ())] > 0
    assert not _counters(restored)  # restored, not counted
    third = replica()  # a replica that starts beside the one that reports
    time.sleep(3.0)
    assert [_waiting(r) for r in (second, third)] == [(1.0, 1.0), (0.0, 0.0)]
    second.proc.kill()  # SIGKILL: it gives nothing back; its role runs out
    second.proc.communicate()
    _until(lambda: _waiting(third) == (1.0, 1.0), ROLE_SECONDS + 10,
           f"third: {_waiting(third)}")
    done = run_flowhost("runs", "resolve", run_id, "a", "--action", "skip", "--server",
                        third.address, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    _wait_finished(postgres_url, [run_id])
    _until(lambda: _waiting(third) == (0.0, 0.0), 10, f"third: {_waiting(third)}")
    counted = _counters(_scrape(third))
    assert counted[("flowhost_manual_interventions_total",
                    (("action", "skip"), ("plugin", "fail")))] == 1
    assert counted[("flowhost_runs_total", (("status", "success"),
                                            ("workflow", "person")))] == 1
