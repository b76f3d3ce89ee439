"""The daemon's metrics end to end: the real ``flowhost serve`` scraped over loopback —
``/metrics`` fed from what its workers commit (each event once, also after a restart),
``/healthz``, ``/readyz`` (503 while it drains), ``promtool check metrics`` on the
exposition, and the address cases (taken: exit 2; the default taken: it goes on)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import (
    Daemon,
    StartDaemon,
    flowhost_command,
    start_daemons,
    submit,
    wait_file,
    wait_for,
)

from flowhost._proto import host_pb2 as pb

PROMTOOL = shutil.which("promtool")
METRICS = re.compile(r"flowhost serve: metrics on (?P<url>http://\S+/metrics)")
CHAIN = """\
workflow_id: chain
steps:
  - {id: a, plugin: echo, inputs: {text: hello}}
  - {id: b, plugin: echo, inputs: {text: $a.text}}
"""
PERSON = ("workflow_id: person\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
          "intervention, message: needs a person}\n")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def gated(folder: Path) -> str:
    return (f"workflow_id: gated\nsteps:\n  - id: g\n    plugin: gate\n    inputs: "
            f"{{started: '{folder / 'g.started'}', release: '{folder / 'release'}', "
            "seconds: 120}\n")


def metrics_url(served: Daemon) -> str:
    found = METRICS.search(served.stderr())
    assert found is not None, served.stderr()
    return found["url"]


def get(url: str, accept: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[1])
    return None


def eventually(url: str, series: str, expected: float, timeout: float = 30) -> str:
    """The exposition once ``series`` reads ``expected`` (the feed polls every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        text = get(url)[1]
        if sample(text, series) == expected:
            return text
        assert time.monotonic() < deadline, f"{series} is {sample(text, series)}:\n{text}"
        time.sleep(0.1)


def test_metrics_health_and_readiness_of_a_real_daemon(daemon: StartDaemon,
                                                       tmp_path: Path) -> None:
    served = daemon("--metrics-listen", "127.0.0.1:0", "--drain-timeout", "60")
    url = metrics_url(served)
    base = url.removesuffix("/metrics")
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/readyz") == (200, "ready\n")
    stub = served.stub()
    chain = submit(stub, CHAIN)
    assert wait_for(stub, chain)["status"] == "success"
    text = eventually(url, 'flowhost_runs_total{status="success",workflow="chain"}', 1)
    assert sample(text, 'flowhost_steps_total{plugin="echo",status="success"}') == 2
    assert sample(text, 'flowhost_step_attempts_total{outcome="success",plugin="echo",'
                  'transport="local"}') == 2
    assert sample(text, "flowhost_daemon_ready") == 1
    assert chain not in text  # run ids only as exemplars
    _, open_text = get(url, "application/openmetrics-text; version=1.0.0")
    assert f'# {{run_id="{chain}"}}' in open_text
    if PROMTOOL is not None:
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                                 capture_output=True, timeout=60, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    running = submit(stub, gated(tmp_path))
    wait_file(tmp_path / "g.started")
    eventually(url, "flowhost_runs_active", 1)
    time.sleep(0.5)  # more polls: what was counted stays counted once
    assert sample(get(url)[1], 'flowhost_steps_total{plugin="echo",status="success"}') == 2

    served.proc.send_signal(signal.SIGTERM)  # drains: the gated step may finish
    deadline = time.monotonic() + 30
    while (answer := get(base + "/readyz"))[0] == 200:
        assert time.monotonic() < deadline, "never stopped being ready"
        time.sleep(0.05)
    assert answer[0] == 503 and "draining" in answer[1]
    assert sample(get(url)[1], "flowhost_daemon_ready") == 0
    assert get(base + "/healthz")[0] == 200  # alive while it drains
    (tmp_path / "release").write_text("go")
    assert served.proc.wait(60) == 0

    again = daemon("--metrics-listen", "127.0.0.1:0", state=served.state_dir)
    url = metrics_url(again)
    assert wait_for(again.stub(), running)["status"] == "success"  # within the drain
    # a new life: counters from 0, nothing of the past counted again
    assert wait_for(again.stub(), submit(again.stub(), CHAIN))["status"] == "success"
    text = eventually(url, 'flowhost_runs_total{status="success",workflow="chain"}', 1)
    assert sample(text, 'flowhost_steps_total{plugin="echo",status="success"}') == 2
    assert sample(text, 'flowhost_runs_total{status="success",workflow="gated"}') is None


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_waiting_run_is_restored_after_a_restart_and_its_answer_counted(
        daemon: StartDaemon, stop: int) -> None:
    served = daemon("--metrics-listen", "127.0.0.1:0")
    stub = served.stub()
    run_id = submit(stub, PERSON)
    wait_for(stub, run_id, ["waiting"])
    url = metrics_url(served)
    text = eventually(url, "flowhost_runs_waiting", 1)
    assert sample(text, 'flowhost_interventions_waiting{plugin="fail"}') == 1
    assert sample(text, 'flowhost_step_attempts_total{outcome="intervention",plugin="fail",'
                  'transport="local"}') == 1
    served.stop(stop)

    again = daemon("--metrics-listen", "127.0.0.1:0", state=served.state_dir)
    url = metrics_url(again)
    text = get(url)[1]  # the first scrape: restored before it serves
    assert sample(text, "flowhost_runs_waiting") == 1  # restored, not counted
    assert sample(text, 'flowhost_interventions_waiting{plugin="fail"}') == 1
    assert sample(text, "flowhost_runs_active") == 0
    assert sample(text, "flowhost_intervention_oldest_wait_seconds") > 0  # type: ignore[operator]
    assert sample(text, 'flowhost_step_attempts_total{outcome="intervention",plugin="fail",'
                  'transport="local"}') is None
    stub = again.stub()
    stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="a", action="skip", outputs_json=b'{"never": "x"}'),
        timeout=30)
    assert wait_for(stub, run_id)["status"] == "success"
    text = eventually(url, 'flowhost_runs_total{status="success",workflow="person"}', 1)
    assert sample(text, 'flowhost_manual_interventions_total{action="skip",plugin="fail"}') == 1
    assert sample(text, 'flowhost_intervention_wait_seconds_count{plugin="fail"}') == 1
    assert sample(text, "flowhost_runs_waiting") == 0


def test_a_taken_metrics_address_is_exit_2_and_a_taken_default_is_not(
        daemon: StartDaemon, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*flowhost_command(), "serve", "--state-dir", str(tmp_path / "s"), "--listen",
             "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert f"--metrics-listen 127.0.0.1:{port}: cannot listen there" in done.stderr
    assert "Traceback" not in done.stderr and "listening on" not in done.stdout
    done = subprocess.run(
        [*flowhost_command(), "serve", "--state-dir", str(tmp_path / "s"), "--listen",
         "127.0.0.1:0", "--metrics-listen", "nowhere"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "not HOST:PORT" in done.stderr

    default = socket.socket()
    try:
        default.bind(("127.0.0.1", 9464))
        default.listen()
    except OSError:
        pass  # another process has it already: taken all the same
    try:
        served = daemon()  # the default address, taken
        assert "serving no metrics" in served.stderr()
        assert wait_for(served.stub(), submit(served.stub(), CHAIN))["status"] == "success"
    finally:
        default.close()
