"""Plugin and network faults, end to end: every fault a plugin or a plugin server can
commit ends as the recovery ladder says, with the error named, and the run stays
stoppable (Ctrl-C for ``flowhost run``/``resume``, ``CancelRun`` for the daemon).

What ``tests/test_faults.py`` (a local plugin raising anything, through the CLI) and
``test_server_faults.py`` (the plugin server's side) prove is not repeated here: these are
the hangs, huge and malformed outputs, floods, and servers that die, never answer, close
the connection or are not there, through the real ``flowhost`` and ``flowhost serve``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from plugin_servers import Served, StartServer, flowhost
from tallies import report
from test_daemon_support import StartDaemon, result, start_daemons, submit, wait_file, wait_for
from test_remote_workflows import run, step
from test_resume_kill import start

from flowhost._proto import host_pb2 as pb

Mode = Literal["silent", "close"]


class Listener:
    """A TCP port in this process that accepts connections and then never says a word
    (``silent``) or closes each at once (``close``)."""

    def __init__(self, mode: Mode, port: int = 0) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: a dead
        self.sock.settimeout(0.05)                            # server's port at once
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.mode == "close":
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    opened: list[Listener] = []

    def open_listener(mode: Mode, port: int = 0) -> Listener:
        opened.append(Listener(mode, port))
        return opened[-1]

    try:
        yield open_listener
    finally:
        for listener in opened:
            listener.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


def wait_text(path: Path, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (found := path.read_text("utf-8", "replace") if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}:\n{found}"
        time.sleep(0.02)
    return found


def stopped_by_ctrl_c(proc: subprocess.Popen[bytes], out: Path, within: float = 30) -> str:
    """SIGINT, as a terminal's Ctrl-C sends it: the process ends (``within`` is only a
    bound against hanging), exit 130, saying how to go on. Its output."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"Ctrl-C did not stop it:\n{out.read_text()}") from None
    text = out.read_text("utf-8", "replace")
    assert proc.returncode == 130, text
    assert "flowhost resume" in text and "Traceback" not in text
    return text


@contextlib.contextmanager
def background(folder: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    proc, out = start(folder, *args)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- local plugins, through flowhost run --------------------------------------------------

MALFORMED = {  # what the plugin returns -> what the error names
    "none": "field '(root)': Input should be a valid dictionary",
    "list": "field '(root)': Input should be a valid dictionary",
    "text": "field '(root)': Input should be a valid dictionary",
    "wrong-type": "field 'value': Input should be a valid number",
    "nan": "field 'value' is NaN, which is not a JSON value",
    "object": "field 'value': Input should be a valid number",
    "deep": "field 'value': Input should be a valid number",
}


def malformed_spec(plugin: str) -> str:
    lines = ["workflow_id: malformed", "steps:"]
    lines += [f"  - {{id: {what}, plugin: {plugin}, inputs: {{what: {what}}}, "
              "on_failure: continue, manual: false}" for what in MALFORMED]
    lines.append("  - {id: after, plugin: echo, inputs: {text: still here}}")
    return "\n".join(lines) + "\n"


def assert_malformed_named(done: subprocess.CompletedProcess[str], found: dict[str, Any]
                           ) -> None:
    no_traceback(done)
    for what, named in MALFORMED.items():
        failed = step(found, what)
        assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
        remote_nan = what == "nan" and failed["plugin"].startswith("grpc://")
        expected = "field 'value': None is not of type 'number'" if remote_nan else named
        assert failed["error_type"] == "InvalidOutputs", failed
        assert expected in failed["error"], failed
    assert step(found, "after")["status"] == "success"


def test_outputs_that_are_not_outputs_fail_their_step_naming_the_field(
        tmp_path: Path) -> None:
    # NaN used to pass as a success, then failed the run's checkpoint as "a corrupt state
    # database" (SQLite's JSON refused the event): it is the plugin's InvalidOutputs.
    done, found = run(tmp_path, malformed_spec("malformed"))
    assert_malformed_named(done, found)
    listed = flowhost("runs", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["run_id"] == found["run_id"]


def test_a_50_mb_output_is_checkpointed_and_resumable(tmp_path: Path) -> None:
    done, found = run(tmp_path, """
workflow_id: huge
steps:
  - {id: big, plugin: huge, inputs: {megabytes: 50}}
""")
    no_traceback(done)
    assert done.returncode == 0 and found["status"] == "success"
    assert len(found["outputs"]["big"]["text"]) == 50_000_000
    again = flowhost("resume", found["run_id"], cwd=tmp_path)
    assert again.returncode == 2 and "already finished (success)" in again.stderr


def test_a_plugin_flooding_stdout_and_stderr_costs_nothing(tmp_path: Path) -> None:
    done, found = run(tmp_path, """
workflow_id: flood
steps:
  - {id: py, plugin: flood, inputs: {megabytes: 20, stream: both}}
  - {id: raw, plugin: flood, inputs: {megabytes: 20, stream: both, raw: true}, needs: [py]}
  - {id: logged, plugin: flood, inputs: {megabytes: 20, stream: logger}, needs: [raw]}
  - {id: after, plugin: echo, inputs: {text: done}, needs: [logged]}
""")
    no_traceback(done)
    assert done.returncode == 0 and found["status"] == "success"
    assert len(done.stdout) > 39_000_000 and len(done.stderr) > 59_000_000
    assert "run finished: success" in done.stdout


HANGS = {  # how a plugin hangs -> its step
    "async": "plugin: hang",
    "sync": "plugin: sync-hang",
    "to_thread": "plugin: hang, inputs: {thread: true",
}


def hang_step(how: str, started: Path, extra: str = "") -> str:
    plugin = HANGS[how]
    inputs = f", started: '{started}'}}" if "inputs" in plugin else \
        f", inputs: {{started: '{started}'}}"
    return f"  - {{id: {how.replace('_', '-')}, {plugin}{inputs}{extra}}}"


@pytest.mark.parametrize("how", ["async", "sync"])
def test_a_hang_past_its_timeout_is_retried_then_fails_as_timeout_error(
        tmp_path: Path, how: str) -> None:
    started = tmp_path / "started"
    done, found = run(tmp_path, "workflow_id: hangs\nsteps:\n" + hang_step(
        how, started, ", timeout: 0.5, retry: {max_attempts: 2, initial_delay: 0.1}") + "\n")
    no_traceback(done)
    hung = found["steps"][0]
    assert done.returncode == 1 and found["status"] == "failed"
    assert (hung["status"], hung["attempts"], hung["error_type"]) == (
        "failed", 2, "TimeoutError")
    assert "timed out after 0.5s" in hung["error"]
    assert len(started.read_text().splitlines()) == 2


def write_hang(folder: Path, how: str) -> Path:
    """``wf.yaml``: one step that hangs, without a timeout; the file it marks its start in."""
    started = folder / "started"
    (folder / "wf.yaml").write_text("workflow_id: hangs\nsteps:\n" + hang_step(
        how, started) + "\n", encoding="utf-8")
    return started


@pytest.mark.parametrize("how", ["async", "sync"])
def test_ctrl_c_stops_a_hang_without_timeout(tmp_path: Path, how: str) -> None:
    started = write_hang(tmp_path, how)
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(started)
        stopped_by_ctrl_c(proc, out)
    shown = json.loads(flowhost("runs", "show", "--json", run_id_in(out), cwd=tmp_path).stdout)
    assert shown["status"] == "interrupted"
    assert shown["steps"][0]["status"] == "cancelled"


def run_id_in(out: Path) -> str:
    return out.read_text().splitlines()[0].removeprefix("run_id: ")


def test_ctrl_c_stops_resume_of_a_plugin_stuck_in_to_thread(tmp_path: Path) -> None:
    # An async plugin awaiting asyncio.to_thread of a call that never returns: asyncio.run
    # waited for that thread, forever, after the run was checkpointed.
    started = write_hang(tmp_path, "to_thread")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(started)
        proc.kill()
        proc.wait()
    run_id = run_id_in(out)
    started.unlink()
    with background(tmp_path, "resume", run_id) as (proc, out):
        wait_file(started)
        stopped_by_ctrl_c(proc, out)


def test_ctrl_c_stops_run_of_a_plugin_stuck_in_to_thread(tmp_path: Path) -> None:
    started = write_hang(tmp_path, "to_thread")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(started)
        stopped_by_ctrl_c(proc, out, within=10)


# -- remote plugins, through flowhost run --------------------------------------------------

@pytest.fixture
def served(plugin_server: StartServer) -> Served:
    """One server of the fixture plugins the remote cases call."""
    return plugin_server("noop", "echo", "huge", "malformed", "hang", "sync-hang", "gate")


def test_remote_outputs_that_are_not_outputs_or_too_large_fail_naming_why(
        served: Served, tmp_path: Path) -> None:
    spec = malformed_spec(served.url("malformed")).replace(
        "  - {id: after,", f"  - {{id: big, plugin: {served.url('huge')}, inputs: "
        "{megabytes: 50}, on_failure: continue, manual: false}\n  - {id: after,")
    done, found = run(tmp_path, spec)
    assert_malformed_named(done, found)
    big = step(found, "big")
    assert (big["status"], big["attempts"], big["error_type"]) == (
        "failed", 1, "MessageTooLarge")  # permanent: retrying cannot help
    assert "past this server's message limit" in big["error"]
    assert "--max-message-bytes" in big["hint"]


@pytest.mark.parametrize("how", ["hang", "sync-hang"])
def test_a_remote_hang_past_its_timeout_is_retried_then_fails(
        served: Served, tmp_path: Path, how: str) -> None:
    started = tmp_path / "started"
    done, found = run(tmp_path, f"""
workflow_id: remote-hang
steps:
  - id: h
    plugin: {served.url(how)}
    inputs: {{started: '{started}'}}
    timeout: 0.5
    retry: {{max_attempts: 2, initial_delay: 0.1}}
""")
    no_traceback(done)
    hung = step(found, "h")
    assert done.returncode == 1 and (hung["status"], hung["attempts"]) == ("failed", 2)
    assert "DEADLINE_EXCEEDED" in hung["error"] or hung["error_type"] == "TimeoutError", hung
    assert len(started.read_text().splitlines()) == 2
    assert served.proc.poll() is None  # the server outlives its stuck calls


def test_ctrl_c_stops_a_remote_call_that_never_answers(served: Served, tmp_path: Path) -> None:
    started = tmp_path / "started"
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: remote-hang
steps:
  - {{id: h, plugin: {served.url("hang")}, inputs: {{started: '{started}'}}}}
""", encoding="utf-8")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(started)
        stopped_by_ctrl_c(proc, out)


def test_a_server_killed_mid_call_fails_the_step_as_unavailable_after_its_retries(
        plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("gate")
    started = tmp_path / "started"
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: killed-server
steps:
  - id: g
    plugin: {served.url("gate")}
    inputs: {{started: '{started}', release: '{tmp_path / "never"}'}}
    retry: {{max_attempts: 2, initial_delay: 0.2, jitter: false}}
    timeout: 30
""", encoding="utf-8")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(started)
        served.stop(signal.SIGKILL)
        proc.wait(60)
    found = json.loads((tmp_path / "result.json").read_text())
    gate = step(found, "g")
    assert proc.returncode == 1, out.read_text()
    assert (gate["status"], gate["attempts"], gate["error_type"]) == (
        "failed", 2, "TransientError")
    assert "UNAVAILABLE" in gate["error"] and served.address in gate["error"]


def replaced_mid_run(served: Served, tmp_path: Path, extra: str) -> str:
    """A spec whose remote step starts after a local gate opens: the test changes what is
    on the server's port meanwhile (the workflow was checked against the live server)."""
    gate = f"{{started: '{tmp_path / 'started'}', release: '{tmp_path / 'release'}'}}"
    return f"""
workflow_id: replaced
steps:
  - {{id: g, plugin: gate, inputs: {gate}}}
  - id: r
    plugin: {served.url("noop")}
    needs: [g]{extra}
"""


@pytest.mark.parametrize("now", ["silent", "close", "nothing"])
def test_a_server_replaced_mid_run_fails_the_remote_step_naming_why(
        served: Served, listen: Callable[..., Listener], tmp_path: Path, now: str) -> None:
    (tmp_path / "wf.yaml").write_text(replaced_mid_run(
        served, tmp_path, "\n    timeout: 2\n    retry: {max_attempts: 2, initial_delay: 0.1}"),
        encoding="utf-8")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(tmp_path / "started")
        served.stop(signal.SIGKILL)
        listener = None if now == "nothing" else listen(now, served.port)
        (tmp_path / "release").touch()
        proc.wait(60)
    found = json.loads((tmp_path / "result.json").read_text())
    remote = step(found, "r")
    assert proc.returncode == 1, out.read_text()
    assert (remote["status"], remote["attempts"]) == ("failed", 2), remote
    assert "Traceback" not in out.read_text()
    assert served.address in remote["error"], remote
    if now == "silent":  # connected, and no answer: no HTTP/2 settings, or none in time
        assert any(said in remote["error"] for said in (
            "timed out before receiving SETTINGS", "DEADLINE_EXCEEDED")), remote
    else:
        assert "UNAVAILABLE" in remote["error"], remote
    if listener is not None:
        assert listener.accepted >= 1


def test_ctrl_c_stops_a_call_to_a_server_that_never_answers(
        served: Served, listen: Callable[..., Listener], tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(replaced_mid_run(served, tmp_path, ""), encoding="utf-8")
    with background(tmp_path, "run", "wf.yaml") as (proc, out):
        wait_file(tmp_path / "started")
        served.stop(signal.SIGKILL)
        listener = listen("silent", served.port)
        (tmp_path / "release").touch()
        wait_text(out, f"r ({served.url('noop')}) started")
        deadline = time.monotonic() + 30
        while not listener.accepted:  # the call is under way: its connection is open
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stopped_by_ctrl_c(proc, out)


@pytest.mark.parametrize("there", ["silent", "close", "nothing"])
def test_an_unusable_server_when_the_run_is_checked_is_exit_2_or_its_fallback(
        listen: Callable[..., Listener], unused_tcp_port: int, tmp_path: Path,
        there: str) -> None:
    port = unused_tcp_port if there == "nothing" else listen(there).port
    (tmp_path / "flowhost.toml").write_text("[grpc]\nconnect_timeout = 0.5\n")
    url = f"grpc://127.0.0.1:{port}/noop"
    done, _ = run(tmp_path, f"workflow_id: w\nsteps:\n  - {{id: r, plugin: {url}}}\n")
    no_traceback(done)
    assert done.returncode == 2
    assert f"cannot reach grpc://127.0.0.1:{port}" in done.stderr and "wf.yaml" in done.stderr
    done, found = run(tmp_path, f"""
workflow_id: w
steps:
  - id: r
    plugin: {url}
    retry: {{max_attempts: 1}}
    fallback: [{{plugin: noop, inputs: {{value: 41}}}}]
""")
    no_traceback(done)
    assert done.returncode == 0 and found["outputs"]["r"] == {"value": 42}
    assert step(found, "r")["used_plugin"] == "noop"


# -- the daemon: the same faults in its workers ----------------------------------------------

def listed_as(stub: Any, run_id: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        runs = stub.ListRuns(pb.ListRunsRequest(page_size=100), timeout=30).runs
        if [r.status for r in runs if r.run_id == run_id] == [status]:
            return
        assert time.monotonic() < deadline, f"run {run_id} is not {status}: {runs}"
        time.sleep(0.05)


RAISED = {"system-exit": "SystemExit", "keyboard": "KeyboardInterrupt",
          "recursion": "RecursionError"}


def test_the_daemon_ends_each_plugin_fault_as_the_ladder_says_and_cancels_hangs(
        daemon: StartDaemon, served: Served, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    served_by = daemon("--max-runs", "8")
    stub = served_by.stub()
    raised = {what: submit(stub, "workflow_id: raising\nsteps:\n" + "".join(
        f"  - {{id: {mode}, plugin: raiser, inputs: {{what: {what}, sync: {sync}}}, "
        "on_failure: continue, manual: false}\n"
        for mode, sync in (("in-coroutine", "false"), ("in-thread", "true"))))
        for what in RAISED}
    timed = submit(stub, "workflow_id: hangs\nsteps:\n" + "\n".join(hang_step(
        how, tmp_path / f"timed-{how}", ", timeout: 0.5, retry: {max_attempts: 2, "
        "initial_delay: 0.1}, on_failure: continue, manual: false") for how in HANGS) + "\n")
    malformed = submit(stub, malformed_spec("malformed"))
    flood = submit(stub, "workflow_id: flood\nsteps:\n  - {id: f, plugin: flood, inputs: "
                         "{megabytes: 10, stream: both, raw: true}}\n")
    big = submit(stub, "workflow_id: huge\nsteps:\n  - {id: big, plugin: huge}\n")
    hangs = {how: submit(stub, "workflow_id: hang\nsteps:\n" + hang_step(
        how, tmp_path / f"hang-{how}") + "\n") for how in HANGS}
    hangs["remote"] = submit(stub, f"workflow_id: hang\nsteps:\n  - {{id: remote, plugin: "
                                   f"{served.url('hang')}, inputs: {{started: "
                                   f"'{tmp_path / 'hang-remote'}'}}}}\n")

    for what, run_id in raised.items():
        found = wait_for(stub, run_id)
        for failed in found["steps"]:
            assert failed["status"] == "failed", failed
            assert RAISED[what] in f"{failed['error_type']} {failed['error']}", failed
    found = wait_for(stub, timed)
    for hung in found["steps"]:
        assert (hung["status"], hung["attempts"], hung["error_type"]) == (
            "failed", 2, "TimeoutError"), hung
    found = wait_for(stub, malformed)
    for what, named in MALFORMED.items():
        assert named in step(found, what)["error"]
    assert wait_for(stub, flood)["status"] == "success"
    listed_as(stub, big, "success")  # (GetRun of it is past a default client's 4 MB)
    shown = flowhost("runs", "show", big, "--json", "--server", served_by.address, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["outputs"]["big"]["text"]) == 50_000_000

    for how, run_id in hangs.items():
        wait_file(tmp_path / f"hang-{how}")
        assert result(stub, run_id)["status"] == "running"
        stub.CancelRun(pb.CancelRunRequest(run_id=run_id, reason="it hangs"), timeout=30)
    for run_id in hangs.values():
        found = wait_for(stub, run_id)
        assert found["status"] == "cancelled", found
        assert "it hangs" in (found["steps"][0]["reason"] or "")
    after = submit(stub, "workflow_id: after\nsteps:\n  - {plugin: echo, inputs: {text: ok}}\n")
    assert wait_for(stub, after)["status"] == "success"  # its workers serve on
    report(request, "fault matrix, daemon", runs=len(raised) + 4 + len(hangs) + 1,
           cancelled_hangs=len(hangs))
