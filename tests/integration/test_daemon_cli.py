"""The daemon's clients: ``flowhost submit`` and ``flowhost runs ... --server``, the real
commands against the real daemon."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_servers import flowhost as run_flowhost
from test_daemon_support import (
    StartDaemon,
    flowhost_command,
    start_daemons,
    wait_file,
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    yield from start_daemons(tmp_path)


ASKS = """\
workflow_id: asks
steps:
  - id: a
    plugin: fail
    inputs: {kind: intervention, message: needs a person, hint: look at it}
  - id: b
    plugin: echo
    inputs: {text: $a.never}
"""


def gate(folder: Path) -> str:
    return (f"workflow_id: gated\nsteps:\n  - id: g\n    plugin: gate\n    inputs: {{started: "
            f"'{folder / 'started'}', release: '{folder / 'release'}'}}\n")


def test_submit_prints_the_run_id_alone_and_runs_commands_talk_to_the_daemon(
        daemon: StartDaemon, tmp_path: Path) -> None:
    served = daemon()
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow_id: hello\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n")
    done = run_flowhost("submit", str(spec), "--server", served.address, "--set", "a.text=yo",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert done.stdout == run_id + "\n" and run_id
    env = {"FLOWHOST_SERVER": served.address}
    watched = run_flowhost("runs", "watch", run_id, "--no-progress", cwd=tmp_path, env=env)
    assert watched.returncode == 0 and "success" in watched.stdout
    shown = run_flowhost("runs", "show", run_id, "--json", cwd=tmp_path, env=env)
    result = json.loads(shown.stdout)
    assert result["status"] == "success" and result["outputs"]["a"]["text"] == "yo"
    listed = run_flowhost("runs", "list", "--json", cwd=tmp_path, env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    human = run_flowhost("runs", "show", run_id, cwd=tmp_path, env=env)
    assert "Working directory:" in human.stdout and result["workdir"] in human.stdout
    as_json = run_flowhost("runs", "watch", run_id, "--json", cwd=tmp_path, env=env)
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    # without --server nor $FLOWHOST_SERVER, `runs list` stays on the local state dir
    local = run_flowhost("runs", "list", cwd=tmp_path)
    assert local.returncode == 0 and run_id not in local.stdout


def test_submit_wait_exits_with_the_runs_code_and_a_waiting_run_says_how_to_answer(
        daemon: StartDaemon, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("carol:tok-c\n")
    mine = tmp_path / "mine"
    mine.write_text("tok-c\n")
    served = daemon("--token-file", str(tokens))
    spec = tmp_path / "asks.yaml"
    spec.write_text(ASKS)
    flags = ["--server", served.address, "--token-file", str(mine)]
    waited = run_flowhost("submit", str(spec), "--wait", "--no-progress", *flags, cwd=tmp_path)
    assert waited.returncode == 3, waited.stderr
    run_id = waited.stdout.splitlines()[0]
    assert f"flowhost runs resolve {run_id} a" in waited.stdout
    assert "--token-file" in waited.stdout
    resolved = run_flowhost("runs", "resolve", run_id, "a", "--action", "skip", "--outputs",
                            '{"never": "typed"}', "--comment", "done by hand", *flags,
                            cwd=tmp_path)
    assert resolved.returncode == 0 and "by carol" in resolved.stdout
    again = run_flowhost("runs", "resolve", run_id, "a", "--action", "abort", *flags,
                         cwd=tmp_path)
    assert again.returncode == 2 and "carol" in again.stderr
    watched = run_flowhost("runs", "watch", run_id, "--no-progress", *flags, cwd=tmp_path)
    assert watched.returncode == 0
    shown = run_flowhost("runs", "show", run_id, *flags, cwd=tmp_path)
    assert "by carol" in shown.stdout and "done by hand" in shown.stdout
    unauthenticated = run_flowhost("runs", "show", run_id, "--server", served.address,
                                   cwd=tmp_path)
    assert unauthenticated.returncode == 2 and "token" in unauthenticated.stderr
    failing = tmp_path / "fails.yaml"
    failing.write_text("workflow_id: f\nsteps:\n  - {plugin: fail, manual: false}\n")
    failed = run_flowhost("submit", str(failing), "--wait", "--no-progress", *flags,
                          cwd=tmp_path)
    assert failed.returncode == 1


def test_a_missing_daemon_or_a_bad_spec_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow_id: x\nsteps:\n  - {plugin: noop}\n")
    for args in (["submit", str(spec)], ["runs", "watch", "r1"], ["runs", "cancel", "r1"],
                 ["runs", "list", "--server", "127.0.0.1:9"]):
        done = run_flowhost(*args, "--server", "127.0.0.1:9", cwd=tmp_path) \
            if "--server" not in args else run_flowhost(*args, cwd=tmp_path)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "127.0.0.1:9" in done.stderr
        assert "flowhost serve" in done.stderr and "Traceback" not in done.stderr
    bad = run_flowhost("submit", str(spec), "--server", "nonsense", cwd=tmp_path)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


def test_a_bad_spec_is_refused_with_its_file_and_line(daemon: StartDaemon,
                                                       tmp_path: Path) -> None:
    served = daemon()
    spec = tmp_path / "bad.yaml"
    spec.write_text("workflow_id: x\nsteps:\n  - id: a\n    plugin: nope\n")
    done = run_flowhost("submit", str(spec), "--server", served.address, cwd=tmp_path)
    assert done.returncode == 2 and f"{spec}:4" in done.stderr and done.stdout == ""


def _read_until(fd: int, wanted: str, timeout: float = 30) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {wanted!r} in:\n{seen}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096).decode("utf-8", "replace")
            except OSError:
                break
    return seen


def test_submit_wait_asks_on_a_terminal(daemon: StartDaemon, tmp_path: Path) -> None:
    served = daemon()
    spec = tmp_path / "asks.yaml"
    spec.write_text(ASKS)
    main, child = pty.openpty()
    proc = subprocess.Popen([*flowhost_command(), "submit", str(spec), "--wait",
                             "--no-progress", "--server", served.address], cwd=tmp_path,
                            stdin=child, stdout=child, stderr=child,
                            env={**os.environ, "TERM": "dumb"})
    os.close(child)
    try:
        _read_until(main, "Choose [r]etry")
        os.write(main, b"s\n")
        _read_until(main, "as JSON")
        os.write(main, b'{"never": "from the terminal"}\n')
        out = _read_until(main, "run finished: success")
        assert proc.wait(30) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    shown = run_flowhost("runs", "list", "--json", "--server", served.address, cwd=tmp_path)
    assert json.loads(shown.stdout)[0]["status"] == "success"


def test_ctrl_c_detaches_without_cancelling(daemon: StartDaemon, tmp_path: Path) -> None:
    served = daemon()
    spec = tmp_path / "gate.yaml"
    spec.write_text(gate(tmp_path))
    proc = subprocess.Popen([*flowhost_command(), "submit", str(spec), "--wait",
                             "--no-progress", "--server", served.address], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_file(tmp_path / "started")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    run_id = out.splitlines()[0]
    assert f"flowhost runs watch {run_id} --server {served.address}" in err
    (tmp_path / "release").touch()
    watched = run_flowhost("runs", "watch", run_id, "--no-progress", "--server",
                           served.address, cwd=tmp_path)
    assert watched.returncode == 0 and "success" in watched.stdout


def test_submit_wait_follows_the_run_across_a_daemon_restart(
        daemon: StartDaemon, tmp_path: Path) -> None:
    first = daemon("--drain-timeout", "0.5")
    spec = tmp_path / "gate.yaml"
    spec.write_text(gate(tmp_path))
    proc = subprocess.Popen([*flowhost_command(), "submit", str(spec), "--wait",
                             "--no-progress", "--server", first.address], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_file(tmp_path / "started")
        (tmp_path / "started").unlink()
        assert first.stop() == 0
        daemon("--drain-timeout", "0.5", "--listen", first.address)
        wait_file(tmp_path / "started")
        (tmp_path / "release").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "reconnecting" in err
    assert out.count("run finished: interrupted") == 1 and "run finished: success" in out
