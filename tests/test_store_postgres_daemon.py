"""``flowhost serve --store postgresql://…`` against the session's PostgreSQL: a submitted
run is executed by the daemon's workers and recorded there (watched and shown through the
daemon's API), and a daemon killed with SIGKILL mid-run and started again on the same
store finishes the run without running a finished step again."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_server import (
    PostgresServer,
    finished_steps,
    start_daemon,
    stop_daemons,
    wait_for_text,
)
from postgres_server import flowhost_cli as run_flowhost

from flowhost.store.postgres import PostgresStore

Serve = Callable[..., tuple[subprocess.Popen[str], str]]


@pytest.fixture
def serve(postgres_url: str, tmp_path: Path) -> Iterator[Serve]:
    """``serve()`` starts a daemon on the test's database (working dirs in tmp_path);
    every one started is stopped."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, local: str = "local") -> tuple[subprocess.Popen[str], str]:
        proc, address = start_daemon(postgres_url, tmp_path, tmp_path / local,
                                     tmp_path / f"daemon-{len(started)}.log", *args)
        started.append(proc)
        return proc, address

    yield start
    stop_daemons(started)


def test_a_submitted_run_is_executed_and_recorded_in_postgresql(
        serve: Serve, postgres_url: str, write_spec: Callable[[str], Path],
        tmp_path: Path) -> None:
    _, address = serve()
    spec = write_spec("workflow_id: served\nsteps:\n  - {id: a, plugin: noop}\n"
                      "  - {id: b, plugin: noop, inputs: {value: $a.value}}\n")
    done = run_flowhost("submit", str(spec), "--server", address, "--wait", "--no-progress",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.splitlines()[0].strip()
    shown = run_flowhost("runs", "show", run_id, "--server", address, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["status"] == "success"
    with PostgresStore.open(postgres_url, create=False) as store:
        record = store.run(run_id)
        assert record.status == "success" and store.steps_succeeded(record) == 2
        assert Path(record.cwd).parent == tmp_path / "local" / "runs"  # this host's dir
    # the store's URL (it may hold a password) is on no command line: anyone may read those
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:  # a process that ended meanwhile
            continue
        if b"flowhost.daemon.worker" in words:
            assert postgres_url.encode() not in words, words


def test_a_daemon_killed_mid_run_finishes_it_when_started_again(
        serve: Serve, postgres_url: str, write_spec: Callable[[str], Path],
        tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    spec = write_spec(f"""\
        workflow_id: durable
        steps:
          - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: a}}}}
          - id: b
            plugin: journal
            inputs: {{journal: '{journal}', label: b, seconds: 5, value: $a.value}}
        """)
    daemon, address = serve()
    submitted = run_flowhost("submit", str(spec), "--server", address, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    wait_for_text(journal, "begin b")
    daemon.kill()  # SIGKILL
    daemon.communicate()
    # (its worker, in a session of its own, dies with its parent, dropping its lease)
    _, address = serve()
    watched = run_flowhost("runs", "watch", run_id, "--server", address, "--no-progress",
                           cwd=tmp_path, timeout=120)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    with PostgresStore.open(postgres_url, create=False) as store:
        assert store.run(run_id).status == "success"
    ended = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("end")]
    assert ended.count("a") == 1 and "b" in ended  # a finished once; b at least once


def _journal_spec(write_spec: Callable[..., Path], journal: Path, label: str,
                  seconds: float) -> Path:
    return write_spec(f"""\
        workflow_id: {label}
        steps:
          - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: {label}-a}}}}
          - id: b
            plugin: journal
            inputs: {{journal: '{journal}', label: {label}-b, seconds: {seconds},
                     value: $a.value}}
        """, name=f"{label}.yaml")


def test_two_daemons_share_the_runs_and_one_takes_over_from_the_other(
        serve: Serve, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    first, first_address = serve("--max-runs", "1", local="one")
    _, second_address = serve("--max-runs", "1", local="two")
    # A long run on the first daemon, then more than it has slots for: the second claims.
    ids = []
    for number in range(4):
        spec = _journal_spec(write_spec, journal, f"r{number}", 5 if number == 0 else 0.2)
        done = run_flowhost("submit", str(spec), "--server", first_address, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    wait_for_text(journal, "begin r0-b")
    first.kill()  # SIGKILL, mid-way through r0's step b
    first.communicate()
    for run_id in ids:  # the second daemon finishes every run, and watches them all
        watched = run_flowhost("runs", "watch", run_id, "--server", second_address,
                               "--no-progress", cwd=tmp_path, timeout=120)
        assert watched.returncode == 0, watched.stdout + watched.stderr
    with PostgresStore.open(postgres_url, create=False) as store:
        assert {store.run(run_id).status for run_id in ids} == {"success"}
    ended = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("end")]
    for number in range(4):  # no finished step ran twice
        assert ended.count(f"r{number}-a") == 1, ended
        assert f"r{number}-b" in ended
    assert "claimed run" in (tmp_path / "daemon-1.log").read_text()


def test_an_answer_given_to_another_daemon_reaches_the_run(
        serve: Serve, write_spec: Callable[..., Path], tmp_path: Path) -> None:
    _, first = serve(local="one")
    _, second = serve(local="two")
    spec = write_spec(f"""\
        workflow_id: asking
        steps:
          - id: f
            plugin: flaky
            inputs: {{counter_file: '{tmp_path / "calls"}', fail_times: 1,
                     kind: intervention, hint: "Start the thing"}}
          - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
          - {{id: meanwhile, plugin: sleeper, inputs: {{seconds: 5}}}}
        """)
    # (``meanwhile`` keeps the run executing on the first daemon while f waits: the answer
    # recorded through the second reaches the first's worker, which looks every second)
    submitted = run_flowhost("submit", str(spec), "--server", first, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    deadline = time.monotonic() + 60
    while True:  # the question is asked (seen through the other daemon)
        shown = run_flowhost("runs", "show", run_id, "--server", second, "--json",
                             cwd=tmp_path)
        steps = {s["id"]: s for s in json.loads(shown.stdout)["steps"]} if shown.stdout else {}
        if steps.get("f", {}).get("status") == "waiting":
            break
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.2)
    answered = run_flowhost("runs", "resolve", run_id, "f", "--action", "retry",
                            "--server", second, cwd=tmp_path)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    deadline = time.monotonic() + 60
    while True:  # the run goes on, on whichever daemon, and both say so
        shown = run_flowhost("runs", "show", run_id, "--server", first, "--json",
                             cwd=tmp_path)
        if shown.stdout and json.loads(shown.stdout)["status"] == "success":
            break
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(900)  # (CI runs it with 300 runs: .ci/run)
def test_three_daemons_finish_every_run_when_one_is_killed_mid_way(
        serve: Serve, postgres_url: str, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    """The issue's test (``FLOWHOST_REPLICA_RUNS`` runs: 300 in CI, 30 by default): runs are
    submitted to three daemons in turn; once a third of them finished, one daemon is
    SIGKILLed. Every run finishes, and no step has two StepFinished events in its journal
    (none that had finished ran again)."""

    total = int(os.environ.get("FLOWHOST_REPLICA_RUNS", "30"))
    journal = tmp_path / "journal.txt"
    daemons = [serve("--max-runs", "2", local=f"host{n}") for n in range(3)]
    ids = []
    for number in range(total):
        spec = _journal_spec(write_spec, journal, f"r{number}", 0.3)
        address = daemons[number % 3][1]
        done = run_flowhost("submit", str(spec), "--server", address, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    with PostgresStore.open(postgres_url, create=False) as store:

        def finished() -> int:  # (the database holds this test's runs alone)
            return len(store.runs(statuses=["success"]))

        deadline = time.monotonic() + 120 + total  # (a run takes about 0.3 s a slot)
        while finished() < total // 3:
            assert time.monotonic() < deadline, f"only {finished()} runs finished"
            time.sleep(0.1)
        killed = daemons[1][0]
        killed.kill()  # SIGKILL: its workers die with it, their sessions end
        killed.communicate()
        while finished() < total:
            assert time.monotonic() < deadline, f"only {finished()} of {total} finished"
            time.sleep(0.2)
    assert finished_steps(postgres_url, ids) == {run_id: ["a", "b"] for run_id in ids}
    # The counting plugin's own word: a step's work ran again only where it was under way
    # on the killed daemon (two slots) when it died, never after its result was recorded.
    ended = Counter(line.split()[1] for line in journal.read_text().splitlines()
                    if line.startswith("end"))
    assert {f"r{n}-{step}" for n in range(total) for step in "ab"} <= set(ended)
    assert len([label for label, times in ended.items() if times > 1]) <= 2, ended


def test_the_workers_log_in_with_the_daemons_pgpassword(
        postgres_server: PostgresServer, write_spec: Callable[..., Path],
        tmp_path: Path) -> None:
    """The password in ``$PGPASSWORD`` (never in the URL, nor on a command line) reaches
    the workers over their channel: their environment, which a check command can read in
    ``/proc/PID/environ``, holds no libpq setting."""
    url = postgres_server.create_password_database("s3cret-pw")
    proc, address = start_daemon(url, tmp_path, tmp_path / "local", tmp_path / "daemon.log",
                                 env={"PGPASSWORD": "s3cret-pw"})
    try:
        spec = write_spec("workflow_id: w\nsteps:\n  - {id: a, plugin: noop}\n")
        done = run_flowhost("submit", str(spec), "--server", address, "--wait",
                            "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + (tmp_path / "daemon.log").read_text()
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "the daemon has no worker processes"
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not [v for v in environ if v.startswith(b"PG")], (pid, environ)
            assert b"s3cret-pw" not in b"".join(environ)
    finally:
        proc.kill()
        proc.communicate()
    refused = run_flowhost("runs", "list", "--store", url, cwd=tmp_path,
                           env={"PGPASSWORD": "wrong"})
    assert refused.returncode == 2 and "refused the login" in refused.stderr
