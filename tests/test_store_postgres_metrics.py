"""Several ``flowhost serve`` replicas on one PostgreSQL store: each one's ``/metrics``
count what it executed, so that sums over the replicas count every run and every step
once (issue 15), also when one is SIGKILLed mid-run and another takes its run over (the
survivor counts the steps it executed, not those finished before the kill)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from postgres_server import flowhost_cli as run_flowhost
from prometheus_client.parser import text_string_to_metric_families
from test_store_postgres_daemon import Serve, serve

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
    spec = write_spec(f"""\
        workflow_id: taken
        steps:
          - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: a, seconds: 3}}}}
          - id: b
            plugin: journal
            inputs: {{journal: '{journal}', label: b, seconds: 3, value: $a.value}}
          - {{id: c, plugin: journal, inputs: {{journal: '{journal}', label: c,
               value: $b.value}}}}
        """)
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
