"""The PostgreSQL store behind a connection pooler in transaction mode (``?pooler=transaction``),
through a real PgBouncer (``pool_mode = transaction``, three server connections that every
client shares): no session lock, no ``LISTEN``, no session setting, no prepared statement is
relied on. Leases are then rows alone, and owners of both kinds (direct and pooled) on one
database respect each other's. The contract suite runs through it too
(``tests/test_store_contract.py``, backend ``postgresql-pgbouncer``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_server import (
    PgBouncer,
    finished_steps,
    start_daemon,
    stop_daemons,
    wait_for_text,
)
from postgres_server import flowhost_cli as run_flowhost

from flowhost.problems import UserInputError
from flowhost.store.postgres import PostgresStore
from flowhost.store.postgres.url import parse, with_environment
from flowhost.store.rows import RunRecord


@pytest.fixture
def pooled_url(postgres_url: str, pgbouncer: PgBouncer) -> str:
    return pgbouncer.url(postgres_url)


def new_run(store: PostgresStore, run_id: str = "r1") -> RunRecord:
    return store.create_run(run_id=run_id, workflow_id="w", spec_text="t", spec_path="/w.yaml",
                            spec_redacted=False, overrides=[], cwd="/", total_steps=1)


def test_the_pooler_parameter_is_flowhosts_and_kept_from_libpq() -> None:
    url = parse("postgresql://u@db.internal:6432/flowhost?sslmode=require&pooler=transaction")
    assert url.transaction_pooler
    assert url.libpq == "postgresql://u@db.internal:6432/flowhost?sslmode=require"
    assert url.where == "postgresql:db.internal:6432/flowhost"
    assert not parse("postgresql://u@h/db?pooler=session").transaction_pooler
    assert not parse("postgresql://u@h/db").transaction_pooler
    # what the daemon sends its workers keeps it
    sent = with_environment("postgresql://u@h/db?pooler=transaction", {"PGPASSWORD": "pw"})
    assert parse(sent).transaction_pooler and "password=pw" in parse(sent).libpq
    with pytest.raises(UserInputError, match="pooler=statement is not a pooler mode"):
        parse("postgresql://u@h/db?pooler=statement")
    with pytest.raises(UserInputError, match="given 2 times"):
        parse("postgresql://u@h/db?pooler=transaction&pooler=session")


def test_a_bad_pooler_mode_is_exit_2_naming_it(tmp_path: Path) -> None:
    done = run_flowhost("runs", "list", "--store", "postgresql://u@127.0.0.1:1/db?pooler=yes",
                        cwd=tmp_path)
    assert done.returncode == 2
    assert "pooler=yes is not a pooler mode" in done.stderr and "Traceback" not in done.stderr


def test_direct_and_pooled_owners_respect_each_others_leases(postgres_url: str,
                                                             pooled_url: str) -> None:
    with PostgresStore.open(postgres_url) as direct, PostgresStore.open(pooled_url) as pooled, \
            PostgresStore.open(postgres_url) as other:
        record = new_run(direct)
        lease = pooled.acquire(record, "pooled")
        assert lease is not None and lease.epoch == 1
        # no session lock is held for it, yet a direct store sees it owned and cannot take it
        assert direct.owned(record) and direct.live_status(record) == "running"
        assert direct.acquire(record, "direct") is None
        assert direct.claim("daemon", 5) == []  # nor claim it
        pooled.release(lease)
        assert not direct.owned(record)
        taken = direct.acquire(record, "direct")
        assert taken is not None and taken.epoch == 2
        assert pooled.owned(record) and pooled.acquire(record, "pooled") is None
        assert other.acquire(record, "another direct one") is None
        direct.release(taken)
        assert not pooled.owned(record)


def test_a_frozen_pooled_owner_loses_its_lease_and_writes_nothing_after(
        pooled_url: str) -> None:
    """An owner that holds no session lock is known dead or stuck only by its lease running
    out: frozen past it (SIGSTOP), its run is taken over; continued, it writes nothing."""
    with PostgresStore.open(pooled_url) as store:
        record = new_run(store)
    script = (
        "import sys; from flowhost import events as ev\n"
        "from flowhost.store.postgres import PostgresStore\n"
        "s = PostgresStore.open(sys.argv[1], lease_seconds=1.0)\n"
        "r = s.run('r1'); assert s.acquire(r, 'frozen') is not None\n"
        "w = s.writer(r); w(ev.StepStarted('r1', 'a', 'noop', '', 1, 1)); w.close()\n"
        "print('held', flush=True); sys.stdin.readline()\n"
        "w = s.writer(r); w(ev.StepFinished('r1', 'a', 'noop', 'noop', 'success', 1, 0.1,"
        " {'value': 1})); w.close()\n"
        "print('failure:', w.failure, flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script, pooled_url], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "held"
        child.send_signal(signal.SIGSTOP)
        with PostgresStore.open(pooled_url) as taker:
            record = taker.run("r1")
            assert taker.acquire(record, "taker") is None  # its lease still holds
            deadline = time.monotonic() + 30
            while (lease := taker.acquire(record, "taker")) is None:
                assert time.monotonic() < deadline, "the frozen owner's lease never ran out"
                time.sleep(0.1)
            assert lease.epoch == 2
            child.send_signal(signal.SIGCONT)
            child.stdin.write("go\n")
            child.stdin.flush()
            said = child.stdout.readline()
            assert "writes nothing more" in said, said
            assert [type(e).__name__ for e in taker.events(record)] == ["StepStarted"]
            taker.release(lease)
    finally:
        child.kill()
        child.communicate()


def test_flowhost_run_resume_and_runs_work_through_the_pooler(
        pooled_url: str, write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec("workflow_id: pooled\nsteps:\n" + "".join(
        f"  - {{id: s{n}, plugin: noop, cache: false"
        + (f", inputs: {{value: $s{n - 1}.value}}" if n else "") + "}\n" for n in range(20))
        + f"  - id: last\n    plugin: flaky\n    inputs: {{counter_file: '{tmp_path / 'n'}', "
        "kind: permanent}\n")
    done = run_flowhost("run", str(spec), "--store", pooled_url, "--no-progress",
                        "--json-out", str(tmp_path / "result.json"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # ``last`` fails once
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "failed" and len(result["steps"]) == 21
    listed = run_flowhost("runs", "list", "--store", pooled_url, cwd=tmp_path)
    assert listed.returncode == 0 and result["run_id"] in listed.stdout
    resumed = run_flowhost("resume", result["run_id"], "--reload-spec", "--store", pooled_url,
                           "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    shown = run_flowhost("runs", "show", result["run_id"], "--store", pooled_url, "--json",
                         cwd=tmp_path)
    assert json.loads(shown.stdout)["status"] == "success"


@pytest.fixture
def serve(pooled_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[
        subprocess.Popen[str], str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(local: str) -> tuple[subprocess.Popen[str], str]:
        proc, address = start_daemon(pooled_url, tmp_path, tmp_path / local,
                                     tmp_path / f"daemon-{local}.log", "--max-runs", "2")
        started.append(proc)
        return proc, address

    yield start
    stop_daemons(started)


@pytest.mark.slow
def test_two_daemons_through_the_pooler_finish_every_run_when_one_is_killed(
        serve: Callable[..., tuple[subprocess.Popen[str], str]], pooled_url: str,
        write_spec: Callable[..., Path], tmp_path: Path) -> None:
    """Runs submitted to two daemons that reach PostgreSQL only through PgBouncer; one is
    SIGKILLed mid-way: its runs are taken over once their leases run out (about 30 s: no
    session tells that it died), every run finishes, and no step has two results."""
    journal = tmp_path / "journal.txt"
    daemons = [serve("one"), serve("two")]
    ids = []
    for number in range(8):
        spec = write_spec(f"""\
            workflow_id: r{number}
            steps:
              - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: r{number}-a}}}}
              - id: b
                plugin: journal
                inputs: {{journal: '{journal}', label: r{number}-b, seconds: 1.5,
                         value: $a.value}}
            """, name=f"r{number}.yaml")
        done = run_flowhost("submit", str(spec), "--server", daemons[number % 2][1],
                            cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    wait_for_text(journal, "begin r1-b")
    daemons[1][0].kill()
    daemons[1][0].communicate()
    with PostgresStore.open(pooled_url, create=False) as store:
        deadline = time.monotonic() + 180
        while (done_count := sum(store.run(i).status == "success" for i in ids)) < len(ids):
            assert time.monotonic() < deadline, f"only {done_count} of {len(ids)} finished"
            time.sleep(0.5)
    assert finished_steps(pooled_url, ids) == {run_id: ["a", "b"] for run_id in ids}
    ended = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("end")]
    assert all(ended.count(f"r{n}-a") == 1 for n in range(8)), ended
    assert "claimed run" in (tmp_path / "daemon-one.log").read_text()
