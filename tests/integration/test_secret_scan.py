"""The secret scan: every feature run with ``${secret.X}`` values, and everything flowhost
prints or writes searched for the values and 34 forms of each (JSON-escaped, Python repr,
shell- and SQL-quoted, latin-1, URL-encoded three ways, hex, base64 of the value and of its
JSON-escaped forms at every alignment, the random suffix alone; ``secret_scan``).

The scenarios, each with real servers on loopback, always stopped:

- a one-off ``flowhost run -v`` (then ``runs resolve`` and ``resume``) of a workflow whose
  steps give the ``leaky`` fixture plugin the secret, in-process and over gRPC, ending in
  success, a retried transient error, a permanent error with a fallback, an unexpected
  exception (its traceback), a question for a person; checks of every kind with the secrets
  in their arguments and environments, failing and passing, also in ``final_validation``
  (an ``output`` check of a field that held one, across the resume); ``--metrics-listen``
  (classic and OpenMetrics, scraped while a step runs), a push to a real pushgateway;
  ``runs show``/``list`` (text and JSON), ``plan``, ``validate``, ``--json-out``, a bad
  ``--set`` holding the value, ``--outputs`` holding it (refused); a second run (the cache);
  a value read as a plain ``${env.X}`` that the plugin returns as a ``SecretStr``; the state
  dir byte-wise while the run goes on (its write-ahead log) and after, its database dumped;
- ``flowhost serve`` with the secrets allowed (``[serve] env_allow``): ``flowhost submit``
  and ``SubmitRun`` (overrides holding the value; a bad one; a spec holding it, refused),
  ``GetRun``, every ``WatchRun`` event (and ``runs watch``, ``submit --wait``),
  ``ResolveIntervention`` with the value in its comment (and in outputs, refused),
  ``CancelRun`` with it in the reason, of a waiting and of a running run, ``ListRuns``,
  ``/metrics`` in both formats, the daemon's stdout and stderr, its state dir (running and
  stopped) with every run's directory;
- Ctrl-C while a step runs, then ``resume``;
- ``flowhost.run_workflow`` in this process: every log record at DEBUG, the result, a
  ``SpecError``, overrides given as a mapping (written as JSON);
- ``--token-file``: the daemon's tokens, and a wrong one, in nothing printed or written;
- the live view on a terminal, a person answering there.

Left out, each for its reason (the test says it where it leaves a file out): the spec files
the test wrote (they hold ``${secret.X}``, not a value) and a marker file named after one.
At the end, what a local plugin prints to the process's stdout/stderr itself, and what a
remote plugin logs on its own server (the host names the secrets among a call's inputs in
``InvokeRequest.masked``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from plugin_servers import Served, flowhost, start_server
from prometheus_server import PUSHGATEWAY, Server, free_port, start_pushgateway
from secret_scan import SECRET, SUFFIX, URL_SECRET, VAULT_SECRET, Scan, encodings
from tallies import report
from terminal import on_a_terminal
from test_daemon_support import (
    Daemon,
    code_of,
    flowhost_command,
    start_daemon,
    submit,
    wait_file,
    wait_for,
    watch,
)

from flowhost._proto import host_pb2 as pb

pytestmark = pytest.mark.timeout(120)

ENV = {"TOKEN": SECRET, "API_KEY": URL_SECRET, "VAULT": VAULT_SECRET}
VAULT = '"${env.VAULT}"'  # a plain variable: the plugin's SecretStr output masks it
# A final check of a field that held a secret: after a resume the step runs again for it.
FINAL_OUTPUT = '{field: local.echo, equals: "${secret.TOKEN}"}'
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
METRICS_LINE = re.compile(r"flowhost(?: serve)?: metrics on (?P<url>http://\S+/metrics)")
RUN_ID = re.compile(r"run_id: (\S+)")
CHECK = ("import os, sys; print('argv', sys.argv[1:], 'env', os.environ['TOK'], "
         "os.environ.get('KEY')); print('to stderr', sys.argv[1], file=sys.stderr); "
         "sys.exit(int(sys.argv[2]))")


class _Echoing(BaseHTTPRequestHandler):
    """200 for ``/ok...``; anything else 500 with the request's path in the body."""

    def do_GET(self) -> None:
        ok = self.path.startswith("/ok")
        body = b"fine" if ok else f"refused {self.path}".encode()
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echoing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Served]:
    served = start_server("leaky", log=tmp_path / "plugin-server.log")
    try:
        yield served
    finally:
        served.stop()


def get(url: str, accept: str = "text/plain") -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode("utf-8", "replace"))


def leaky(mode: str = "echo", **more: str) -> str:
    extra = "".join(f", {key}: {value}" for key, value in more.items())
    return f'{{secret: "${{secret.TOKEN}}", mode: {mode}, label: "x-${{secret.TOKEN}}-y"{extra}}}'


def checks(http: str, exit_code: int, folder: Path, output: str = "") -> str:
    """Checks of every kind, the secrets in their arguments and environments; with
    ``exit_code`` 0 they pass, else each fails."""
    fail = exit_code != 0
    missing = "/nonexistent/${secret.TOKEN}" if fail else f"{folder}/${{secret.API_KEY}}.marker"
    status = "/bad" if fail else "/ok"
    equals = "not-${secret.TOKEN}" if fail else "${secret.TOKEN}"
    output = output or f'{{field: echo, equals: "{equals}"}}'
    module = "${secret.TOKEN}" if fail else "json"  # a name that is not a module's: refused
    where = f"{folder}/${{secret.API_KEY}}.d" if fail else str(folder)  # no such directory
    contains = "${secret.TOKEN}" if fail else "x = 1"  # a check kind of a third party
    python = json.dumps(sys.executable)
    shell = f"import sys; print(sys.argv[1]); sys.exit({exit_code})"
    return f"""
      - command:
          run: [{python}, -c, {json.dumps(CHECK)}, "${{secret.TOKEN}}", "{exit_code}"]
          env: {{TOK: "${{secret.TOKEN}}", KEY: "${{secret.API_KEY}}"}}
      - command: {{run: "{sys.executable} -c '{shell}' '${{secret.API_KEY}}'", shell: true}}
      - files_exist: ["{missing}"]
      - python_syntax: ["{missing}"]
      - http_ok: {{url: "{http}{status}?key=${{secret.API_KEY}}", timeout: 5}}
      - importable: {{module: "{module}", path: "{where}", timeout: 30}}
      - file_contains: {{path: "{folder}/${{secret.API_KEY}}.marker", text: "{contains}"}}
      - output: {output}"""


# -- a one-off run ---------------------------------------------------------------------------


def scan_spec(workflow_id: str, folder: Path, remote: Served, http: str,
              gate: bool = False) -> str:
    """Every step kind and check kind with the secrets; with ``gate`` a last step that holds
    the run until ``gate.release`` exists (``gate.started`` says it began)."""
    gated = f"""
  - id: gate
    plugin: gate
    needs: [local, flaky, fallback, remote, remote-flaky]
    inputs: {{started: "{folder / 'gate.started'}", release: "{folder / 'gate.release'}"}}"""
    return f"""\
workflow_id: {workflow_id}
defaults: {{retry: {{max_attempts: 2, initial_delay: 0}}}}
steps:
  - id: local
    plugin: leaky
    inputs: {leaky(vault=VAULT)}
    cache: true
    validation:{checks(http, 0, folder)}
  - id: failing-checks
    plugin: leaky
    inputs: {leaky()}
    retry: {{max_attempts: 1}}
    manual: false
    on_failure: continue
    validation:{checks(http, 3, folder)}
      - http_ok: {{url: "http://127.0.0.1:{free_port()}/?key=${{secret.API_KEY}}", timeout: 1}}
      - http_ok: {{url: "{http}/ok?token=${{secret.TOKEN}}", timeout: 5}}
  - id: flaky
    plugin: leaky
    inputs: {leaky("flaky", counter="flaky-calls")}
  - id: fallback
    plugin: leaky
    inputs: {leaky("permanent")}
    fallback:
      - plugin: leaky
        inputs: {{secret: $inputs.secret, label: $inputs.label}}
  - id: crash
    plugin: leaky
    inputs: {leaky("crash")}
    manual: false
    on_failure: continue
  - id: remote
    plugin: {remote.url("leaky")}
    inputs: {leaky(vault=VAULT)}
  - id: remote-flaky
    plugin: {remote.url("leaky")}
    inputs: {leaky("flaky", counter=json.dumps(str(folder / "remote-calls")))}
  - id: remote-crash
    plugin: {remote.url("leaky")}
    inputs: {leaky("crash")}
    manual: false
    on_failure: continue
  - id: person
    plugin: leaky
    inputs: {leaky("intervention")}
    manual: {{hint: "ask for ${{secret.TOKEN}}"}}
  - id: after
    plugin: leaky
    inputs: {{secret: $person.echo, label: $remote.sentence}}{gated if gate else ""}
final_validation:{checks(http, 0, folder, FINAL_OUTPUT)}
"""


@contextmanager
def started(folder: Path, stdout: Path, stderr: Path,
            *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``flowhost ARGS`` in ``folder`` with the secrets in its environment, its output in
    ``stdout`` and ``stderr``; killed if it still runs at the end."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen([*flowhost_command(), *args], cwd=folder, stdout=out,
                                stderr=err, env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_gate(path: Path, proc: subprocess.Popen[bytes], stderr: Path) -> None:
    """Until the gate step has begun (it wrote ``path``)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
        time.sleep(0.02)


def wait_line(path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while (found := pattern.search(path.read_text("utf-8", "replace"))) is None:
        assert proc.poll() is None, path.read_text("utf-8", "replace")
        assert time.monotonic() < deadline, f"no {pattern.pattern} in {path}"
        time.sleep(0.02)
    return found["url"]


@dataclass
class Outputs:
    """What one command printed, as places of the scan."""

    scan: Scan
    folder: Path

    def command(self, name: str, *args: str, code: int | None = 0) -> str:
        done = flowhost(*args, cwd=self.folder, env=ENV, timeout=60)
        self.scan.data(f"{name}: stdout", done.stdout)
        self.scan.data(f"{name}: stderr", done.stderr)
        if code is not None:
            assert done.returncode == code, (name, done.stdout, done.stderr)
        return done.stdout


def pushgateway(tmp_path: Path) -> Server | None:
    return start_pushgateway(tmp_path / "gateway") if PUSHGATEWAY is not None else None


def test_nothing_a_one_off_run_prints_or_writes_holds_a_secret(
        tmp_path: Path, remote: Served, http_server: str, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    spec = folder / "wf.yaml"
    spec.write_text(scan_spec("secret-scan", folder, remote, http_server, gate=True),
                    encoding="utf-8")
    marker = folder / f"{URL_SECRET}.marker"
    marker.write_text("x = 1\n", encoding="utf-8")
    scan = Scan()
    out = Outputs(scan, folder)
    out.command("validate", "validate", "wf.yaml")
    out.command("plan", "plan", "wf.yaml")
    out.command("plan --json", "plan", "wf.yaml", "--json")
    out.command("run with a bad --set", "run", "wf.yaml", "--no-progress", "--set",
                f"local.mode={SECRET}", code=2)
    gateway = pushgateway(tmp_path)
    try:
        run_id = one_off_run(scan, folder, tmp_path)
        out.command("runs show (waiting)", "runs", "show", run_id)
        outputs = json.dumps({"echo": SECRET, "sentence": "s", "blob": "b", "items": [],
                              "nested": {}})
        out.command("runs resolve --outputs holding the secret", "runs", "resolve", run_id,
                    "person", "--action", "skip", "--outputs", outputs, code=2)
        outputs = json.dumps({"echo": "by hand", "sentence": "s", "blob": "b", "items": [],
                              "nested": {}})
        out.command("runs resolve", "runs", "resolve", run_id, "person", "--action", "skip",
                    "--outputs", outputs)
        push = ["--pushgateway", gateway.url] if gateway is not None else []
        out.command("resume -v", "resume", run_id, "-v", "--no-progress", "--json-out",
                    "resumed.json", *push)
        if gateway is not None:
            scan.data("the pushgateway's /metrics", get(f"{gateway.url}/metrics"))
    finally:
        if gateway is not None:
            gateway.stop()
    out.command("a second run (the cache)", "run", "wf.yaml", "--no-progress",
                "--on-manual", "skip")
    for args in (["runs", "show", run_id], ["runs", "show", run_id, "--json"],
                 ["runs", "list"], ["runs", "list", "--json"]):
        out.command(" ".join(args), *args)
    result = json.loads(out.command("runs show --json", "runs", "show", run_id, "--json"))
    assert result["status"] == "success", result
    statuses = {step["id"]: step["status"] for step in result["steps"]}
    assert statuses["crash"] == statuses["remote-crash"] == "failed", statuses
    assert statuses["person"] == "skipped" and statuses["after"] == "success", statuses
    assert "leaky" in result["steps"][3]["used_plugin"]
    assert result["outputs"]["local"]["vault"] == result["outputs"]["remote"]["vault"] == (
        "**********")  # pydantic's mask of a SecretStr
    skipped = scan.tree(folder, exclude=lambda path: (
        "the spec the test wrote" if path == spec else
        "the test's own marker file, named after the secret" if path == marker else None),
        label="workdir: ")
    assert {path for path, _ in skipped} == {spec, marker}
    state = folder / ".flowhost"
    assert (state / "state.db").is_file()
    finish(scan, request, "secret scan of a one-off run")


def one_off_run(scan: Scan, folder: Path, tmp_path: Path) -> str:
    """``flowhost run -v --metrics-listen`` until its question: its metrics scraped while
    the gate holds it; returns the run id."""
    stdout, stderr = tmp_path / "run.stdout", tmp_path / "run.stderr"
    with started(folder, stdout, stderr, "run", "wf.yaml", "-v", "--no-progress",
                 "--on-manual", "wait", "--json-out", "result.json", "--metrics-listen",
                 "127.0.0.1:0") as proc:
        url = wait_line(stderr, METRICS_LINE, proc)
        wait_gate(folder / "gate.started", proc, stderr)
        # while the run goes on: the database's write-ahead log too
        scan.tree(folder / ".flowhost", label="state dir, the run going on: ")
        scan.data("run --metrics-listen: /metrics", get(url))
        scan.data("run --metrics-listen: /metrics (OpenMetrics)", get(url, OPENMETRICS))
        (folder / "gate.release").touch()
        assert proc.wait(90) == 3, stderr.read_text() + stdout.read_text()
    scan.file(stdout, "run: stdout")
    scan.file(stderr, "run: stderr")
    found = RUN_ID.search(stdout.read_text())
    assert found is not None, stdout.read_text()
    return found[1]


def finish(scan: Scan, request: pytest.FixtureRequest, title: str) -> None:
    print(f"{title}, the places scanned:", *scan.seen, sep="\n  ")
    report(request, title, places=scan.places, bytes=scan.scanned_bytes,
           forms=len(scan.forms), found=len(scan.found))
    assert not scan.found, scan.report()


# -- the daemon ------------------------------------------------------------------------------


def gated_spec(folder: Path) -> str:
    return f"""\
workflow_id: secret-scan-cancelled
steps:
  - {{id: first, plugin: leaky, inputs: {leaky()}}}
  - id: gate
    plugin: gate
    needs: [first]
    inputs: {{started: "{folder / 'gate.started'}", release: "{folder / 'gate.release'}"}}
"""


def clean_outputs() -> str:
    return json.dumps({"echo": "by hand", "sentence": "s", "blob": "b", "items": [],
                       "nested": {}})


def scan_events(scan: Scan, place: str, events: list[Any]) -> None:
    assert events and events[-1].type == "RunFinished", [e.type for e in events]
    for event in events:
        scan.data(f"{place}: {event.seq} {event.type}",
                  event.SerializeToString() + event.event_json)


def test_nothing_the_daemon_answers_serves_or_writes_holds_a_secret(
        tmp_path: Path, remote: Served, http_server: str, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "daemon"
    folder.mkdir()
    (folder / "flowhost.toml").write_text('[serve]\nenv_allow = ["TOKEN", "API_KEY", "VAULT"]\n',
                                          encoding="utf-8")
    marker = folder / f"{URL_SECRET}.marker"
    marker.write_text("x = 1\n", encoding="utf-8")
    spec = folder / "wf.yaml"
    spec.write_text(scan_spec("secret-scan-daemon", folder, remote, http_server),
                    encoding="utf-8")
    gated = folder / "gated.yaml"
    gated.write_text(gated_spec(folder), encoding="utf-8")
    echo = folder / "echo.yaml"
    echo.write_text(f"workflow_id: echo\nsteps:\n  - {{id: e, plugin: leaky, inputs: "
                    f"{leaky()}}}\n", encoding="utf-8")
    scan = Scan()
    state = tmp_path / "state"
    served = start_daemon(state, "--metrics-listen", "127.0.0.1:0", log=tmp_path / "daemon.log",
                          cwd=folder, env=ENV)
    try:
        exercise_the_daemon(scan, served, folder)
        scan.tree(state, label="state dir, the daemon running: ")  # its write-ahead log too
        drain_and_scan(scan, served)
    finally:
        served.stop(signal.SIGKILL)
    skipped = scan.tree(folder, exclude=lambda path: (
        "the specs the test wrote" if path in (spec, gated, echo) else
        "the test's own marker file, named after the secret" if path == marker else None),
        label="daemon's directory: ")
    assert {path for path, _ in skipped} == {spec, gated, echo, marker}
    scan.tree(state, label="state dir: ")
    assert any(place.startswith("state dir: runs/") for place in scan.seen), scan.seen
    finish(scan, request, "secret scan of the daemon")


def drain_and_scan(scan: Scan, served: Daemon) -> None:
    """The daemon's ``/metrics`` (both formats); then SIGTERM: it drains and exits 0; its
    stdout and stderr."""
    url = METRICS_LINE.search(served.stderr())
    assert url is not None, served.stderr()
    scan.data("daemon /metrics", get(url["url"]))
    scan.data("daemon /metrics (OpenMetrics)", get(url["url"], OPENMETRICS))
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(60) == 0, served.stderr()
    assert served.proc.stdout is not None
    scan.data("daemon: stdout", served.proc.stdout.read())
    scan.file(served.log, "daemon: stderr")


def exercise_the_daemon(scan: Scan, served: Daemon, folder: Path) -> None:
    """Every RPC and client command, each answer a place of the scan."""
    out = Outputs(scan, folder)
    server = ["--server", served.address]
    stub = served.stub()
    run_id = out.command("submit", "submit", "wf.yaml", *server, "--set",
                         f"local.label={SECRET}").strip()
    code, details = code_of(lambda: submit(stub, spec_text(folder / "wf.yaml"),
                                           overrides={"local.mode": SECRET}))
    scan.data("SubmitRun with a bad override: details", details)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    other = submit(stub, spec_text(folder / "wf.yaml"), name="other.yaml",
                   overrides={"remote.label": f"+{SECRET}+"})
    # the value written into the spec itself: a run keeps only a masked copy, so it is
    # refused (the daemon has no file to read again, as resume does)
    inputs = f"{{secret: '${{secret.TOKEN}}', label: {json.dumps(SECRET)}}}"
    code, details = code_of(lambda: submit(
        stub, "workflow_id: secret-scan-literal\nsteps:\n  - {id: first, plugin: leaky, "
        f"inputs: {inputs}}}\n", name="literal.yaml"))
    scan.data("SubmitRun of a spec holding the value: details", details)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "literal.yaml" in details and "${secret.TOKEN}" in details, details
    scan.data("GetRun (waiting)", json.dumps(wait_for(stub, run_id, ["waiting"])))
    code, details = code_of(lambda: stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="person", action="skip",
        outputs_json=json.dumps({**json.loads(clean_outputs()), "echo": SECRET}).encode(),
        comment=SECRET), timeout=30))
    scan.data("ResolveIntervention with outputs holding the secret: details", details)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    out.command("runs resolve --comment", "runs", "resolve", run_id, "person", "--action",
                "skip", "--outputs", clean_outputs(), "--comment", f"checked {SECRET}", *server)
    wait_for(stub, other, ["waiting"])
    scan.data("ResolveIntervention", stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=other, step_id="person", action="retry", comment=f"again, {SECRET}"),
        timeout=30).SerializeToString())
    wait_for(stub, other, ["waiting"])
    stub.CancelRun(pb.CancelRunRequest(run_id=other, reason=f"enough of {SECRET}"), timeout=30)
    done = wait_for(stub, run_id)
    assert done["status"] == "success", done
    assert [d["comment"] for d in done["decisions"]] == ["checked ***"], done["decisions"]
    scan.data("GetRun", stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=30).result_json)
    scan.data("GetRun (cancelled)", stub.GetRun(pb.GetRunRequest(run_id=other),
                                                timeout=30).result_json)
    scan_events(scan, "WatchRun", watch(stub, run_id))
    scan_events(scan, "WatchRun (cancelled)", watch(stub, other))
    gated = out.command("submit gated.yaml", "submit", "gated.yaml", *server).strip()
    wait_file(folder / "gate.started")
    answer = stub.CancelRun(pb.CancelRunRequest(run_id=gated, reason=f"stop {SECRET}"),
                            timeout=30)
    assert answer.status == "cancelled"
    scan_events(scan, "WatchRun (cancelled while running)", watch(stub, gated))
    out.command("submit --wait", "submit", "echo.yaml", "--wait", "--no-progress", *server)
    for args in (["runs", "watch", run_id], ["runs", "show", run_id],
                 ["runs", "show", run_id, "--json"], ["runs", "show", other, "--json"],
                 ["runs", "show", gated], ["runs", "list"], ["runs", "list", "--json"]):
        out.command(" ".join(args), *args, *server)
    listed = stub.ListRuns(pb.ListRunsRequest(), timeout=30)
    scan.data("ListRuns", listed.SerializeToString())
    assert len(listed.runs) == 4


def spec_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_nothing_an_interrupted_and_resumed_run_prints_or_writes_holds_a_secret(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Ctrl-C while a step runs (the checkpoint, the closing lines), then ``resume``: the
    step whose outputs held a secret runs again for the step that reads them."""
    (tmp_path / "wf.yaml").write_text(f"""\
workflow_id: interrupted
steps:
  - {{id: local, plugin: leaky, inputs: {leaky(vault=VAULT)}}}
  - id: gate
    plugin: gate
    needs: [local]
    inputs: {{started: "{tmp_path / 'gate.started'}", release: "{tmp_path / 'gate.release'}"}}
  - {{id: after, plugin: leaky, inputs: {{secret: $local.echo}}, needs: [gate]}}
final_validation:
  - output: {FINAL_OUTPUT}
""", encoding="utf-8")
    scan = Scan()
    stdout, stderr = tmp_path / "run.stdout", tmp_path / "run.stderr"
    with started(tmp_path, stdout, stderr, "run", "wf.yaml", "-v", "--no-progress") as proc:
        wait_gate(tmp_path / "gate.started", proc, stderr)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, stdout.read_text() + stderr.read_text()
    scan.file(stdout, "interrupted run: stdout")
    scan.file(stderr, "interrupted run: stderr")
    (tmp_path / "gate.release").touch()
    Outputs(scan, tmp_path).command("resume", "resume", "-v", "--no-progress", "--json-out",
                                    "r.json")
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert result["status"] == "success", result
    assert [s["id"] for s in result["steps"] if s["rerun_after_interruption"]] == [
        "local", "gate"], result["steps"]
    scan.file(tmp_path / "r.json", "--json-out")
    scan.tree(tmp_path / ".flowhost", label="state dir: ")
    finish(scan, request, "secret scan of an interrupted run")


def test_no_token_of_the_daemon_is_printed_or_written(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``--token-file``: the daemon's tokens, and a wrong one a client presents, in nothing
    the daemon or its clients print or write (a refusal does not quote the token)."""
    good, wrong = f"tok-{secrets.token_hex(16)}", f"wrong-{secrets.token_hex(16)}"
    tokens, bad_file = tmp_path / "tokens", tmp_path / "wrong-token"
    tokens.write_text(f"# who may call\nalice:{good}\n", encoding="utf-8")
    bad_file.write_text(wrong + "\n", encoding="utf-8")
    (tmp_path / "wf.yaml").write_text(
        f"workflow_id: tokens\nsteps:\n  - {{id: person, plugin: leaky, inputs: "
        f"{leaky('intervention')}}}\n", encoding="utf-8")
    (tmp_path / "flowhost.toml").write_text('[serve]\nenv_allow = ["TOKEN"]\n',
                                            encoding="utf-8")
    scan = Scan(values=(good, wrong, SECRET))
    served = start_daemon(tmp_path / "state", "--token-file", str(tokens), "--metrics-listen",
                          "127.0.0.1:0", log=tmp_path / "daemon.log", cwd=tmp_path,
                          env=ENV)
    try:
        out = Outputs(scan, tmp_path)
        server = ["--server", served.address]
        out.command("submit with a wrong token", "submit", "wf.yaml", *server,
                    "--token-file", str(bad_file), code=2)
        intruder = served.stub(token=wrong)
        code, details = code_of(lambda: intruder.ListRuns(pb.ListRunsRequest(), timeout=30,
                                                          metadata=intruder.metadata))
        scan.data("ListRuns with a wrong token: details", details)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        run_id = out.command("submit", "submit", "wf.yaml", *server, "--token-file",
                             str(tokens)).strip()
        wait_for(served.stub(token=good), run_id, ["waiting"])
        out.command("runs show", "runs", "show", run_id, *server, "--token-file", str(tokens))
        out.command("runs resolve", "runs", "resolve", run_id, "person", "--action", "abort",
                    "--comment", "no", *server, "--token-file", str(tokens))
        out.command("runs watch", "runs", "watch", run_id, *server, "--token-file",
                    str(tokens), code=1)
        drain_and_scan(scan, served)
    finally:
        served.stop(signal.SIGKILL)
    scan.tree(tmp_path / "state", label="state dir: ")
    finish(scan, request, "secret scan of the daemon's tokens")


def test_nothing_the_python_api_logs_or_returns_holds_a_secret(
        tmp_path: Path, http_server: str, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """``flowhost.run_workflow`` in this process, with the secrets in ``env`` only: every
    log record of any logger at DEBUG, what reached the descriptors, the result, the error
    of a spec that does not check."""
    import flowhost

    spec = f"""\
workflow_id: api
defaults: {{retry: {{max_attempts: 2, initial_delay: 0}}}}
steps:
  - id: local
    plugin: leaky
    inputs: {leaky(vault=VAULT)}
    validation:{checks(http_server, 0, tmp_path)}
  - {{id: flaky, plugin: leaky, inputs: {leaky("flaky")}}}
  - {{id: crash, plugin: leaky, inputs: {leaky("crash")}, manual: false, on_failure: continue}}
  - id: fallback
    plugin: leaky
    inputs: {leaky("permanent")}
    fallback: [{{plugin: leaky, inputs: {{secret: $inputs.secret}}}}]
  - {{id: person, plugin: leaky, inputs: {leaky("intervention")}, on_failure: continue}}
"""
    (tmp_path / f"{URL_SECRET}.marker").write_text("x = 1\n", encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    scan = Scan()
    result = flowhost.run_workflow(spec, spec_name="api.yaml", workdir=tmp_path, env=ENV,
                                   overrides={"fallback.label": SECRET})
    assert result.status == "success", result.model_dump_json()
    assert result.outputs["local"]["echo"] == "***"
    scan.data("the result", result.model_dump_json())
    with pytest.raises(flowhost.SpecError) as refused:
        flowhost.run_workflow(spec, spec_name="api.yaml", workdir=tmp_path, env=ENV,
                              overrides={"local.mode": SECRET})
    scan.data("SpecError", str(refused.value))
    scan.data("SpecError problems", repr(refused.value.problems))
    assert caplog.records, "nothing was logged"
    for record in caplog.records:
        scan.data(f"log record {record.name}", record.getMessage() + (record.exc_text or ""))
    captured = capfd.readouterr()
    scan.data("stdout", captured.out)
    scan.data("stderr", captured.err)
    scan.tree(tmp_path / ".flowhost", label="state dir: ")
    finish(scan, request, "secret scan of the Python API")


# -- the live view on a terminal ------------------------------------------------------------

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\r\n]")


def test_nothing_the_live_view_shows_holds_a_secret(
        tmp_path: Path, remote: Served, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    """``flowhost run -v`` on a terminal, a person answering its question there: what it
    shows, also with the escapes and line breaks taken out (a wrapped line splits a value)."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    # (the remote server's working dir is not the run's: its counter goes in tmp_path)
    remote_flaky = leaky("flaky", counter=json.dumps(str(tmp_path / "remote-calls")))
    (tmp_path / "wf.yaml").write_text(f"""\
workflow_id: live
defaults: {{retry: {{max_attempts: 2, initial_delay: 0}}}}
steps:
  - {{id: local, plugin: leaky, inputs: {leaky(vault=VAULT)}}}
  - {{id: flaky, plugin: leaky, inputs: {leaky("flaky")}}}
  - {{id: crash, plugin: leaky, inputs: {leaky("crash")}, manual: false, on_failure: continue}}
  - {{id: remote, plugin: {remote.url("leaky")}, inputs: {remote_flaky}}}
  - {{id: person, plugin: leaky, inputs: {leaky("intervention")}}}
""", encoding="utf-8")
    code, shown = on_a_terminal(tmp_path, "run", "wf.yaml", "-v", "--json-out", "r.json",
                                typed=f"s\n{clean_outputs()}\n".encode())
    assert code == 0, shown
    assert "Manual intervention required" in shown and "Traceback" in shown, shown
    scan = Scan()
    scan.data("the terminal", shown)
    scan.data("the terminal, without escapes and line breaks", ESCAPES.sub("", shown))
    scan.file(tmp_path / "r.json", "--json-out")
    scan.tree(tmp_path / ".flowhost", label="state dir: ")
    finish(scan, request, "secret scan of the live view")


# -- the scan itself, and what is not masked yet --------------------------------------------


def test_the_scan_finds_each_form_wherever_it_is(request: pytest.FixtureRequest) -> None:
    """Each form, alone or inside a longer text (base64: inside the base64 of a longer
    text, at each byte offset), is found; the forms differ from each other."""
    forms = encodings(SECRET)
    assert len(set(forms.values())) == len(forms) == 34, forms  # each a form of its own
    scan = Scan()
    for form, needle in scan.forms.items():
        probe = Scan()
        probe.data("probe", b"<<" + needle + b">>")
        assert form in {found.form for found in probe.found}, form
    for secret in (SECRET, URL_SECRET):
        for prefix in ("", "a", "ab", "abc"):
            blob = json.dumps({"x": prefix + secret, "y": 1}).encode()
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                probe = Scan()
                probe.data("probe", encode(blob).rstrip(b"="))
                assert probe.found, (secret, prefix, encode)
    clean = Scan()
    clean.data("masked", json.dumps({"x": "***", "y": SECRET.replace(SUFFIX, "")[:6]}))
    assert not clean.found, clean.report()


def print_spec(remote: Served) -> str:
    return f"""\
workflow_id: prints
steps:
  - {{id: local, plugin: leaky, inputs: {{secret: "${{secret.TOKEN}}", stdio: true}}}}
  - {{id: remote, plugin: {remote.url("leaky")}, inputs: {{secret: "${{secret.TOKEN}}"}}}}
"""


def test_what_a_local_plugin_prints_itself_is_masked(tmp_path: Path, remote: Served) -> None:
    (tmp_path / "wf.yaml").write_text(print_spec(remote), encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path, env=ENV, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    scan = Scan()
    scan.data("run: stdout", done.stdout)
    scan.data("run: stderr", done.stderr)
    assert not scan.found, scan.report()


def test_what_a_remote_plugin_logs_is_masked(tmp_path: Path, remote: Served) -> None:
    (tmp_path / "wf.yaml").write_text(print_spec(remote).replace("stdio: true", "stdio: false"),
                                      encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path, env=ENV, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    scan = Scan()
    scan.data("run: stdout", done.stdout)
    scan.data("run: stderr", done.stderr)
    assert not scan.found, scan.report()  # flowhost's own output is clean
    scan.file(remote.log, "the plugin server's log")
    assert not scan.found, scan.report()
