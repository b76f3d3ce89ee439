"""``flowhost run --metrics-listen`` scraped over loopback while a gated step runs,
``--pushgateway`` against a real ``prometheus-pushgateway``, and the bad-input cases: an
address taken or malformed is exit 2 before anything runs; a gateway that is down costs a
message, never the run's exit code."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
ONE = "workflow_id: one\nsteps:\n  - {id: s0, plugin: noop, inputs: {value: 1}}\n"
FAILING = "workflow_id: failing\nsteps:\n  - {id: f, plugin: fail, inputs: {message: 'it broke'}}\n"
METRICS_LINE = re.compile(r"^flowhost: metrics on (?P<url>http://\S+/metrics)$")


def run_flowhost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a subprocess."""
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def sample(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def read_line(proc: subprocess.Popen[str], pattern: re.Pattern[str], timeout: float = 60
              ) -> re.Match[str]:
    """The first line of the process's stderr that matches ``pattern``."""
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=0.5):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = pattern.match(line.rstrip("\n"))
        if found is not None:
            return found
    raise AssertionError(f"no line like {pattern.pattern} on stderr: {''.join(seen)}")


def wait_path(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_metrics_are_served_while_the_run_goes_on(tmp_path: Path) -> None:
    spec = tmp_path / "gated.yaml"
    spec.write_text(
        "workflow_id: gated\nsteps:\n  - {id: first, plugin: noop, inputs: {value: 1}}\n"
        f"  - id: gate\n    plugin: gate\n    needs: [first]\n    inputs: {{started: "
        f"'{tmp_path / 'started'}', release: '{tmp_path / 'release'}'}}\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowhost", "run", str(spec), "--no-progress", "--state-dir",
         str(tmp_path / "state"), "--metrics-listen", "127.0.0.1:0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = read_line(proc, METRICS_LINE)["url"]
        wait_path(tmp_path / "started")
        text = scrape(url)
        assert sample(text, "flowhost_runs_active") == 1
        assert sample(text, 'flowhost_steps_total{plugin="noop",status="success"}') == 1
        assert sample(text, 'flowhost_steps_total{plugin="gate",status="success"}') is None
        base = url.removesuffix("/metrics")
        for probe in ("/healthz", "/readyz"):
            with urllib.request.urlopen(base + probe, timeout=10) as answer:
                assert answer.status == 200
        (tmp_path / "release").touch()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    with pytest.raises(urllib.error.URLError):  # served until the run ends, not after
        scrape(url)


def test_a_taken_or_malformed_address_is_exit_2_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_flowhost("run", "one.yaml", "--state-dir", "state", "--metrics-listen",
                            f"127.0.0.1:{port}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"--metrics-listen 127.0.0.1:{port}: cannot listen there" in done.stderr
    assert "in use" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and not (tmp_path / "state").exists()  # nothing ran
    for bad in ("localhost", "127.0.0.1:port", "[::1]:99999"):
        done = run_flowhost("run", "one.yaml", "--state-dir", "state", "--metrics-listen",
                            bad, cwd=tmp_path)
        assert done.returncode == 2 and "not HOST:PORT" in done.stderr, done.stderr
    done = run_flowhost("run", "one.yaml", "--state-dir", "state", "--pushgateway",
                        "gopher://x", cwd=tmp_path)
    assert done.returncode == 2 and "--pushgateway" in done.stderr
    assert not (tmp_path / "state").exists()


def test_a_gateway_that_is_down_is_said_once_and_the_exit_code_stands(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    (tmp_path / "failing.yaml").write_text(FAILING, encoding="utf-8")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        gateway = f"http://127.0.0.1:{closed.getsockname()[1]}"
        ok = run_flowhost("run", "one.yaml", "--no-progress", "--state-dir", "state",
                          "--pushgateway", gateway, cwd=tmp_path)
        bad = run_flowhost("run", "failing.yaml", "--no-progress", "--state-dir", "state",
                           "--pushgateway", gateway, cwd=tmp_path)
        # as the fuzzing found: a URL of 4,000 characters made a line of 4,351 (bug 5)
        long = run_flowhost("run", "one.yaml", "--no-progress", "--state-dir", "state",
                            "--pushgateway", f"{gateway}/{'a' * 4000}", cwd=tmp_path)
    for done, code in ((ok, 0), (bad, 1)):
        assert done.returncode == code, done.stderr
        assert done.stderr.count("could not push the metrics") == 1, done.stderr
        assert gateway in done.stderr and "Traceback" not in done.stderr
    assert long.returncode == 0 and "could not push the metrics" in long.stderr, long.stderr
    assert "(4," in long.stderr and len(long.stderr.splitlines()[-1]) < 300


def test_a_long_gateway_url_is_exit_2_shortened(tmp_path: Path) -> None:
    """A host name IDNA refuses was an internal error; and no URL is shown whole."""
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    for bad, why in ((f"http://{'a' * 4000}", "not a valid host name"),
                     (f"gopher://{'a' * 4000}", "not an http(s) URL"),
                     (f"http://127.0.0.1:1/?{'a' * 4000}", "without a query")):
        done = run_flowhost("run", "one.yaml", "--state-dir", "state", "--pushgateway", bad,
                            cwd=tmp_path)
        assert done.returncode == 2 and why in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr) < 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway is not installed")
    address = f"127.0.0.1:{_free_port()}"
    with (tmp_path / "pushgateway.log").open("wb") as log:
        proc = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address={address}"],
                                stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(f"http://{address}/-/ready")
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "pushgateway.log").read_text()
                assert time.monotonic() < deadline, "the pushgateway never got ready"
                time.sleep(0.1)
        yield f"http://{address}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pushed_to_a_real_pushgateway_when_the_run_ends(tmp_path: Path, pushgateway: str
                                                        ) -> None:
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    (tmp_path / "failing.yaml").write_text(FAILING, encoding="utf-8")
    for spec, code in (("one.yaml", 0), ("one.yaml", 0), ("failing.yaml", 1)):
        done = run_flowhost("run", spec, "--no-progress", "--state-dir", "state",
                            "--pushgateway", pushgateway, cwd=tmp_path)
        assert done.returncode == code, done.stderr
        assert "could not push" not in done.stderr
    text = scrape(f"{pushgateway}/metrics")
    # one group per workflow (job flowhost), replaced by each run of it: never per run
    assert sample(text, 'flowhost_runs_total{instance="",job="flowhost",status="success",'
                  'workflow="one"}') == 1
    assert sample(text, 'flowhost_runs_total{instance="",job="flowhost",status="failed",'
                  'workflow="failing"}') == 1
    assert sample(text, 'flowhost_steps_total{instance="",job="flowhost",plugin="fail",'
                  'status="failed",workflow="failing"}') == 1
    for workflow in ("one", "failing"):
        groups = re.findall(r'^push_time_seconds\{instance="",job="flowhost",workflow="'
                            + workflow + '"}', text, re.MULTILINE)
        assert len(groups) == 1, text


def test_a_waiting_run_pushes_its_question_and_its_resume_pushes_the_end(
        tmp_path: Path, pushgateway: str) -> None:
    (tmp_path / "person.yaml").write_text(
        "workflow_id: person\nsteps:\n  - id: a\n    plugin: fail\n    inputs: {kind: "
        "intervention, message: 'needs a person'}\n", encoding="utf-8")
    flags = ("--no-progress", "--state-dir", "state", "--pushgateway", pushgateway)
    done = run_flowhost("run", "person.yaml", "--on-manual", "wait", *flags, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    group = 'instance="",job="flowhost",workflow="person"'
    text = scrape(f"{pushgateway}/metrics")
    assert sample(text, f"flowhost_runs_waiting{{{group}}}") == 1
    assert sample(text, 'flowhost_interventions_waiting{instance="",job="flowhost",'
                  'plugin="fail",workflow="person"}') == 1
    done = run_flowhost("resume", "--on-manual", "skip", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = scrape(f"{pushgateway}/metrics")  # the resumed process's own push replaced it
    assert sample(text, 'flowhost_runs_total{instance="",job="flowhost",status="success",'
                  'workflow="person"}') == 1
    assert sample(text, f"flowhost_runs_waiting{{{group}}}") == 0


def test_a_run_without_metrics_flags_never_imports_prometheus_client(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(ONE, encoding="utf-8")
    code = ("import sys; from flowhost.cli import main; "
            "sys.argv = ['flowhost', 'run', 'one.yaml', '--no-progress', '--state-dir', 's']; "
            "code = main(); print('prometheus_client' in sys.modules, code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.stdout.strip().splitlines()[-1] == "False 0", done.stderr
