"""A daemon on SQLite killed (SIGKILL) while a run waits for a person, and started again:
its ``/metrics`` show the waiting run and its open question from the first scrape, restored
from the store and not counted (``test_metrics_daemon`` does the same after a SIGTERM)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import StartDaemon, start_daemons, submit, wait_for
from test_metrics_daemon import PERSON, eventually, get, metrics_url, sample


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def test_a_waiting_run_is_in_the_gauges_of_a_daemon_started_after_a_sigkill(
        daemon: StartDaemon) -> None:
    served = daemon("--metrics-listen", "127.0.0.1:0")
    stub = served.stub()
    run_id = submit(stub, PERSON)
    wait_for(stub, run_id, ["waiting"])
    eventually(metrics_url(served), "flowhost_runs_waiting", 1)
    served.stop(signal.SIGKILL)

    again = daemon("--metrics-listen", "127.0.0.1:0", state=served.state_dir)
    text = get(metrics_url(again))[1]  # the first scrape: restored before it serves
    assert sample(text, "flowhost_runs_waiting") == 1, text
    assert sample(text, 'flowhost_interventions_waiting{plugin="fail"}') == 1
    assert sample(text, "flowhost_runs_active") == 0
    assert sample(text, 'flowhost_step_attempts_total{outcome="intervention",plugin="fail",'
                  'transport="local"}') is None  # restored, not counted
