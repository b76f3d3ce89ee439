"""``--store postgresql://…`` through the real CLI, against the session's PostgreSQL
(``tests/postgres_server.py``): a run is recorded there, its cache serves the next run,
a run killed mid-way resumes from its checkpoints there, and a bad or unreachable store is
an exit-2 message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from postgres_server import flowhost_cli as run_flowhost

from flowhost.store.postgres import PostgresStore

CHAIN = """\
workflow_id: chain
steps:
  - {id: a, plugin: noop}
  - {id: b, plugin: noop, inputs: {value: $a.value}}
  - {id: c, plugin: noop, inputs: {value: $b.value}}
"""


def test_a_run_is_recorded_in_postgresql_and_listed_from_there(
        postgres_url: str, write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    spec = write_spec(CHAIN)
    done = run_flowhost("run", str(spec), "--store", postgres_url, "--no-progress",
                        "--json-out", str(tmp_path / "out.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.splitlines()[0].removeprefix("run_id: ")
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "success"
    assert not (tmp_path / ".flowhost" / "state.db").exists()  # nothing went to SQLite
    with PostgresStore.open(postgres_url, create=False) as store:
        record = store.run(run_id)
        assert record.status == "success" and store.steps_succeeded(record) == 3
        logged = store.events(record)
        assert [e.seq for e in logged] == list(range(1, len(logged) + 1))  # no gaps
        assert type(logged[-1]).__name__ == "RunFinished"
    listed = run_flowhost("runs", "list", "--store", postgres_url, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    shown = run_flowhost("runs", "show", run_id, "--json", cwd=tmp_path,
                         env={"FLOWHOST_STORE": postgres_url})  # the variable, as --store
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "success"


def test_the_cache_in_postgresql_serves_the_next_run(
        postgres_url: str, write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    spec = write_spec(f"workflow_id: cached\nsteps:\n  - id: count\n    plugin: counter\n"
                      f"    inputs: {{calls: '{calls}', text: hello}}\n")
    for _ in range(2):
        done = run_flowhost("run", str(spec), "--store", postgres_url, "--no-progress",
                            cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert len(calls.read_text().splitlines()) == 1  # the second run was served from cache
    cleared = run_flowhost("cache", "clear", "--store", postgres_url, cwd=tmp_path)
    assert cleared.returncode == 0 and "Removed 1 cached result" in cleared.stdout


def test_a_killed_run_resumes_from_its_postgresql_checkpoints(
        postgres_url: str, write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    spec = write_spec(f"""\
        workflow_id: durable
        steps:
          - {{id: a, plugin: journal, inputs: {{journal: '{journal}', label: a}}}}
          - id: b
            plugin: journal
            inputs: {{journal: '{journal}', label: b, seconds: 5, value: $a.value}}
          - {{id: c, plugin: journal, inputs: {{journal: '{journal}', label: c}},
              needs: [b]}}
        """)
    child = subprocess.Popen([sys.executable, "-m", "flowhost", "run", str(spec), "--store",
                              postgres_url, "--no-progress"], cwd=tmp_path, env=dict(os.environ),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while "begin b" not in (journal.read_text() if journal.exists() else ""):
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"b never began: {child.communicate()}")
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    resumed = run_flowhost("resume", "--store", postgres_url, "--no-progress",
                           cwd=tmp_path, timeout=180, env={"FLOWHOST_LOCK_TIMEOUT": "30"})
    # (b was in flight, so it runs again: at least once; a finished, so it does not)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    ended = [line.split()[1] for line in journal.read_text().splitlines()
             if line.startswith("end")]
    assert ended == ["a", "b", "c"]


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://u:secret@127.0.0.1:notaport/db", "is not a port number"),
    ("postgresql://u:secret@[::1/db", "postgresql://"),
    ("mysql://u:secret@db/x", "unknown kind of store"),
])
def test_a_bad_store_url_is_exit_2_and_hides_the_password(
        url: str, says: str, write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    done = run_flowhost("run", str(write_spec(CHAIN)), "--store", url, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "secret" not in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_server_is_exit_2_saying_what_to_check(
        write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    from postgres_server import free_port

    url = f"postgresql://u:secret@127.0.0.1:{free_port()}/db"
    serve = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    for command in (["run", str(write_spec(CHAIN))], ["resume"], ["runs", "list"], serve):
        done = run_flowhost(*command, "--store", url, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert "cannot reach the PostgreSQL server" in done.stderr, done.stderr
        assert "secret" not in done.stderr


def test_a_database_without_flowhost_state_is_not_written_by_runs_list(
        postgres_url: str, tmp_path: Path) -> None:
    done = run_flowhost("runs", "list", "--store", postgres_url, cwd=tmp_path)
    assert done.returncode == 2 and "no flowhost state in postgresql:" in done.stderr
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('runs')").fetchone() == (None,)


def test_a_waiting_run_is_answered_and_resumed_on_postgresql(
        postgres_url: str, write_spec: Callable[[str], Path], tmp_path: Path) -> None:
    spec = write_spec(f"""\
        workflow_id: waiting
        steps:
          - id: f
            plugin: flaky
            inputs: {{counter_file: '{tmp_path / "calls"}', fail_times: 1,
                     kind: intervention, hint: "Start the thing"}}
          - {{id: after, plugin: echo, inputs: {{text: $f.value}}}}
        """)
    store = ["--store", postgres_url]
    waiting = run_flowhost("run", str(spec), *store, "--no-progress", "--on-manual", "wait",
                           cwd=tmp_path)
    assert waiting.returncode == 3, waiting.stderr
    run_id = waiting.stdout.splitlines()[0].removeprefix("run_id: ")
    assert "--store postgresql://" in waiting.stdout  # the hints name the same store
    answered = run_flowhost("runs", "resolve", run_id, "f", "--action", "retry", *store,
                            cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    again = run_flowhost("runs", "resolve", run_id, "f", "--action", "skip", *store,
                         cwd=tmp_path)
    assert again.returncode == 2 and "already decided (retry)" in again.stderr
    resumed = run_flowhost("resume", run_id, *store, "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with PostgresStore.open(postgres_url, create=False) as db:
        assert db.run(run_id).status == "success"
