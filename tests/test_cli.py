"""The ``flowhost`` CLI through the real command, as a subprocess: exit codes, the first line,
the result JSON, messages for bad input (never a traceback), plugin listing without imports,
and Ctrl-C.

Every command runs in the test's own directory, so the default state dir and the (absent)
flowhost.toml are the test's own.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SDK = REPO / "plugin_sdk" / "flowhost_sdk"
WriteSpec = Callable[..., Path]

# The fixture distribution's plugins that are broken, each in its own way.
BROKEN = {
    "broken-import": "ModuleNotFoundError",
    "misnamed": "the class says name = 'something-else'",
    "not-a-plugin": "is not a subclass of flowhost_sdk.Plugin",
}


def flowhost(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
             python_flags: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """``python [flags] -m flowhost ARGS`` (like conftest's run_flowhost, which a test module
    cannot import reliably: several conftest modules share the name)."""
    return subprocess.run([sys.executable, *python_flags, "-m", "flowhost", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


CHAIN = """
workflow_id: cli-chain
description: two echoes and a number
steps:
  - number: 1
    id: first
    purpose: say it
    plugin: echo
    inputs: {text: hello}
  - id: second
    plugin: echo
    inputs: {text: "${first.text} again", tags: [x]}
    validation:
      - output: {field: length, equals: 11}
  - id: count
    plugin: numbers
    inputs: {count: 3}
final_validation:
  - command: {run: [PYTHON, -c, "print('=== 1 failed, 3 passed, 1 skipped in 0.10s ===')"]}
"""


@pytest.fixture
def chain(write_spec: WriteSpec) -> Path:
    return write_spec(CHAIN.replace("PYTHON", json.dumps(sys.executable)))


# ------------------------------------------------------------------------ help, version


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = flowhost("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("run", "validate", "plan", "plugins", "resume", "runs"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command
    assert done.stderr == ""
    run_help = flowhost("run", "--help", cwd=tmp_path)
    assert run_help.returncode == 0
    for flag in ("--set", "--json-out", "--state-dir", "--no-cache", "--max-parallel",
                 "--on-manual", "--no-progress"):
        assert flag in run_help.stdout


def test_version(tmp_path: Path) -> None:
    done = flowhost("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"flowhost {version('flowhost')}\n"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    for args in ([], ["frobnicate"], ["run"], ["plugins"]):
        done = flowhost(*args, cwd=tmp_path)
        assert done.returncode == 2, args
        assert "usage: flowhost" in done.stderr
        assert_no_traceback(done)


# ------------------------------------------------------------------------------- run


def test_run_succeeds_and_writes_the_result(chain: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = flowhost("run", str(chain), "--json-out", str(out), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    match = re.fullmatch(r"run_id: (\S+)", first)
    assert match, first
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["run_id"] == match.group(1)
    assert {"workflow_id", "run_id", "status", "execution_time_s", "steps_completed",
            "steps_failed", "steps_skipped", "steps", "outputs", "final_validation",
            "test_results", "learnings"} <= result.keys()
    assert result["workflow_id"] == "cli-chain"
    assert result["status"] == "success"
    assert isinstance(result["execution_time_s"], float)
    assert (result["steps_completed"], result["steps_failed"], result["steps_skipped"]) == (
        3, 0, 0)
    steps = {step["id"]: step for step in result["steps"]}
    assert list(steps) == ["first", "second", "count"]
    for step in steps.values():
        assert {"id", "plugin", "used_plugin", "status", "attempts", "cached", "duration_s",
                "validation", "error"} <= step.keys()
        assert step["status"] == "success" and step["error"] is None
        assert step["used_plugin"] == step["plugin"] and step["attempts"] == 1
    assert steps["second"]["validation"][0]["kind"] == "output"
    assert steps["second"]["validation"][0]["passed"] is True
    assert result["outputs"]["second"]["text"] == "hello again"
    assert result["outputs"]["count"] == {"count": 3, "label": "n3", "items": [0, 1, 2]}
    assert [check["kind"] for check in result["final_validation"]] == ["command"]
    assert result["test_results"]["total"] == 5
    assert (result["test_results"]["passed"], result["test_results"]["failed"]) == (3, 1)
    assert result["learnings"] == {"pattern_used": "cli-chain", "modifications": [],
                                   "success": True}
    assert_no_traceback(done)


def test_no_progress_prints_plain_lines(chain: Path, tmp_path: Path) -> None:
    done = flowhost("run", str(chain), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run_id: ")
    assert "\x1b[" not in done.stdout  # no colors, no cursor movement
    logged = [line for line in lines[1:] if line.strip()]
    assert logged and all(re.match(r"\[\d\d:\d\d:\d\d\] ", line) for line in logged), logged
    assert any("first (echo) started" in line for line in logged)
    assert any("run finished: success" in line for line in logged)


def test_a_failing_workflow_exits_1_with_the_error_and_hint(write_spec: WriteSpec,
                                                            tmp_path: Path) -> None:
    spec = write_spec("""
        workflow_id: fails
        steps:
          - id: boom
            plugin: fail
            inputs: {kind: permanent, message: the disk is full, hint: free some space}
          - id: after
            plugin: echo
            inputs: {text: $boom.never}
          - id: crash
            plugin: crash
            inputs: {}
            on_failure: continue
    """)
    out = tmp_path / "result.json"
    done = flowhost("run", str(spec), "--json-out", str(out), "--no-progress", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("run_id: ")
    assert "the disk is full" in done.stdout and "free some space" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["status"] == "failed"
    steps = {step["id"]: step for step in result["steps"]}
    assert steps["boom"]["status"] == "failed"
    assert steps["boom"]["error"] == "the disk is full"
    assert steps["after"]["status"] == "skipped"
    assert result["learnings"]["success"] is False
    assert_no_traceback(done)  # not even the crashing plugin's


def test_a_workflow_that_does_not_use_the_broken_plugin_runs(write_spec: WriteSpec,
                                                             tmp_path: Path) -> None:
    spec = write_spec("""
        workflow_id: healthy
        steps:
          - {id: only, plugin: noop, inputs: {value: 41}}
    """)
    out = tmp_path / "result.json"
    done = flowhost("run", str(spec), "--json-out", str(out), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text())["outputs"] == {"only": {"value": 42}}
    assert "broken" not in done.stdout + done.stderr


# ------------------------------------------------------------------------- bad input

GOOD_STEP = "workflow_id: x\nsteps:\n  - id: a\n    plugin: echo\n    inputs: {text: hi}\n"
BAD_SPECS: dict[str, tuple[str, list[str]]] = {
    "malformed-yaml": ("workflow_id: x\nsteps:\n  - id: a\n    plugin: echo\n"
                       "   inputs: {text: [}\n", ["workflow.yaml:5", "malformed"]),
    "not-a-mapping": ("- just\n- a list\n", ["workflow.yaml:1", "must be a mapping"]),
    "empty": ("", ["workflow.yaml", "empty"]),
    "unknown-plugin": ("workflow_id: x\nsteps:\n  - id: a\n    plugin: ecko\n",
                       ["workflow.yaml:4", "step 'a'", "field 'plugin'", "plugin 'ecko'",
                        "did you mean 'echo'?"]),
    "unknown-step": (GOOD_STEP + "  - id: b\n    plugin: echo\n    inputs: {text: $aa.text}\n",
                     ["workflow.yaml:8", "step 'b'", "field 'inputs.text'",
                      "unknown step 'aa'", "did you mean 'a'?"]),
    "unknown-output-field": (GOOD_STEP + "  - id: b\n    plugin: echo\n"
                             "    inputs: {text: $a.txt}\n",
                             ["workflow.yaml:8", "step 'b'", "no field 'txt'",
                              "did you mean 'text'?"]),
    "unknown-input": ("workflow_id: x\nsteps:\n  - id: a\n    plugin: echo\n"
                      "    inputs: {txt: hi}\n",
                      ["workflow.yaml:5", "step 'a'", "field 'inputs.txt'",
                       "did you mean 'text'?"]),
    "unknown-step-key": ("workflow_id: x\nsteps:\n  - id: a\n    plugin: echo\n"
                         "    inptus: {text: hi}\n",
                         ["workflow.yaml:5", "step 'a'", "field 'inptus'",
                          "did you mean 'inputs'?"]),
    "bad-literal-type": ("workflow_id: x\nsteps:\n  - id: a\n    plugin: numbers\n"
                         "    inputs: {count: many}\n",
                         ["workflow.yaml:5", "step 'a'", "field 'inputs.count'", "'many'",
                          "integer"]),
    "bad-reference-type": ("workflow_id: x\nsteps:\n  - {id: a, plugin: numbers, inputs: "
                           "{count: 1}}\n  - {id: b, plugin: numbers, inputs: "
                           "{count: $a.label}}\n",
                           ["workflow.yaml:4", "step 'b'", "$a.label is string",
                            "expects integer"]),
    "bad-policy-type": (GOOD_STEP + "    retry: {max_attempts: lots}\n    timeout: -1\n",
                        ["workflow.yaml:6", "field 'retry.max_attempts'", "workflow.yaml:7",
                         "field 'timeout'"]),
    "cycle": ("workflow_id: x\nsteps:\n  - {id: a, plugin: echo, inputs: {text: $b.text}}\n"
              "  - {id: b, plugin: echo, inputs: {text: $a.text}}\n",
              ["workflow.yaml:3", "dependency cycle: a → b → a"]),
    "unknown-check-kind": (GOOD_STEP + "    validation:\n      - file_exist: [x]\n",
                           ["workflow.yaml:7", "step 'a'", "unknown check kind 'file_exist'",
                            "did you mean 'files_exist'?"]),
}


@pytest.mark.parametrize("command", ["run", "validate", "plan"])
@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_is_exit_2_with_file_line_step_and_field(
    case: str, command: str, write_spec: WriteSpec, tmp_path: Path
) -> None:
    text, expected = BAD_SPECS[case]
    spec = tmp_path / "workflow.yaml"
    spec.write_text(text, encoding="utf-8")
    done = flowhost(command, str(spec), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""  # nothing ran: no run id
    assert done.stderr.startswith("flowhost: ")
    for needle in expected:
        assert needle in done.stderr, (needle, done.stderr)
    assert_no_traceback(done)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "missing.yaml"], ["missing.yaml", "file not found"]),
        (["run", "."], ["is a directory"]),
        (["validate", "missing.yaml"], ["missing.yaml", "file not found"]),
        (["run", "SPEC", "--set", "a.text"], ["--set: 'a.text'", "id.field=value"]),
        (["run", "SPEC", "--set", "zz.text=1"], ["--set: 'zz.text=1'", "no step 'zz'"]),
        (["run", "SPEC", "--set", "a.txt=1"], ["field 'inputs.txt'", "did you mean 'text'?"]),
        (["run", "SPEC", "--max-parallel", "0"], ["--max-parallel", "at least 1"]),
        (["run", "SPEC", "--max-parallel", "abc"], ["--max-parallel", "'abc'"]),
        (["run", "SPEC", "--on-manual", "never"], ["--on-manual", "invalid choice"]),
        (["run", "SPEC", "--json-out", "no/such/dir/out.json"], ["--json-out",
                                                                 "does not exist"]),
        (["run", "SPEC", "--state-dir", "SPEC"], ["--state-dir", "not a directory"]),
        (["run", "SPEC", "--json-out", "."], ["--json-out", "is a directory"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_bad_files_and_flags_are_exit_2(args: list[str], expected: list[str],
                                        write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = write_spec(GOOD_STEP)
    done = flowhost(*[str(spec) if arg == "SPEC" else arg for arg in args], cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run_id" not in done.stdout
    for needle in expected:
        assert needle in done.stderr, (needle, done.stderr)
    assert_no_traceback(done)
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------- validate, plan


def test_validate_a_good_spec(chain: Path, tmp_path: Path) -> None:
    done = flowhost("validate", str(chain), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is valid: 3 steps in 2 groups, 1 final check" in done.stdout
    assert not (tmp_path / ".flowhost").exists()  # nothing ran, nothing was recorded


def test_plan_shows_the_parallel_groups(chain: Path, tmp_path: Path) -> None:
    done = flowhost("plan", str(chain), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Workflow cli-chain: 3 steps in 2 groups — two echoes and a number"
    assert lines[1] == "Group 1 (run in parallel):"
    assert lines[2].startswith("  1. first: echo 1.2.0 (local) — say it")
    assert lines[3].startswith("  3. count: numbers 1.0.0 (local)")
    assert lines[4] == "Group 2:"
    assert lines[5].startswith("  2. second: echo 1.2.0 (local)") and "after first" in lines[5]
    assert lines[6] == "Final validation: command"


def test_plan_json(chain: Path, tmp_path: Path) -> None:
    done = flowhost("plan", str(chain), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["workflow_id"] == "cli-chain"
    groups = [{step["id"] for step in group} for group in plan["groups"]]
    assert groups == [{"first", "count"}, {"second"}]
    second = plan["groups"][1][0]
    assert second == {"id": "second", "plugin": "echo", "version": "1.2.0",
                      "transport": "local", "needs": ["first"], "purpose": ""}


# ---------------------------------------------------------------------------- plugins


def _fixture_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows if row["distribution"] == "flowhost-test-plugins"}


def test_plugins_list_reads_metadata_only(tmp_path: Path) -> None:
    done = flowhost("plugins", "list", cwd=tmp_path, python_flags=["-X", "importtime"])
    assert done.returncode == 0, done.stderr
    names = {line.split()[0] for line in done.stdout.splitlines()[1:]}
    assert {"echo", "noop", "sleeper", *BROKEN} <= names
    assert "flowhost_test_plugins.broken:Broken" in done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    plugin_modules = {m for m in imported
                      if m.startswith(("flowhost_test_plugins", "flowhost_sample_"))}
    assert plugin_modules == set()
    # Start-up: listing needs no pydantic, rich, jsonschema, yaml or grpc.
    heavy = {m for m in imported if m.split(".")[0] in
             {"pydantic", "rich", "jsonschema", "yaml", "grpc", "flowhost_sdk"}}
    assert heavy == set()


def test_plugins_list_shows_the_configured_remote_plugins(tmp_path: Path) -> None:
    """Listing skips the config module when there is no config file: not when there is one."""
    config = "[remote]\nfar-away = \"grpc://127.0.0.1:9/echo\"\n"
    (tmp_path / "flowhost.toml").write_text(config, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hosts.toml").write_text(config.replace("far-away", "named-by-env"))
    here = flowhost("plugins", "list", "--json", cwd=tmp_path)
    by_env = flowhost("plugins", "list", "--json", cwd=elsewhere,
                      env={"FLOWHOST_CONFIG": str(elsewhere / "hosts.toml")})
    for done, name in ((here, "far-away"), (by_env, "named-by-env")):
        assert done.returncode == 0, done.stderr
        rows = {row["name"]: row for row in json.loads(done.stdout)}
        assert rows[name]["transport"] == "grpc"
        assert rows[name]["target"] == "grpc://127.0.0.1:9/echo"
    missing = flowhost("plugins", "list", cwd=elsewhere,
                       env={"FLOWHOST_CONFIG": str(elsewhere / "missing.toml")})
    assert missing.returncode == 2
    assert "missing.toml: the config file (from $FLOWHOST_CONFIG) does not exist" in (
        missing.stderr)


def test_plugins_list_check_reports_the_broken_ones(tmp_path: Path) -> None:
    done = flowhost("plugins", "list", "--check", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    for name, reason in BROKEN.items():
        assert "BROKEN: " in rows[name] and reason in rows[name], rows[name]
    assert rows["echo"].rstrip().endswith("ok")
    assert re.search(r"\b3 of \d+ plugins are broken", done.stderr), done.stderr
    assert_no_traceback(done)


def test_plugins_list_json(tmp_path: Path) -> None:
    done = flowhost("plugins", "list", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _fixture_rows(json.loads(done.stdout))
    assert rows["echo"] == {"name": "echo", "version": "0.0.1",
                            "distribution": "flowhost-test-plugins",
                            "target": "flowhost_test_plugins.basic:Echo", "transport": "local",
                            "shadows": []}
    assert set(BROKEN) <= rows.keys()

    checked = flowhost("plugins", "list", "--json", "--check", cwd=tmp_path)
    assert checked.returncode == 1
    rows = _fixture_rows(json.loads(checked.stdout))
    assert {name for name, row in rows.items() if not row["ok"]} == set(BROKEN)
    for name, reason in BROKEN.items():
        assert reason in rows[name]["error"]
    assert rows["echo"]["ok"] is True and rows["echo"]["plugin_version"] == "1.2.0"


def test_plugins_describe(tmp_path: Path) -> None:
    done = flowhost("plugins", "describe", "echo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("echo 1.2.0 (local) — Returns its input text")
    assert "entry point: flowhost_test_plugins.basic:Echo" in done.stdout
    assert "inputs (JSON Schema):" in done.stdout and "outputs (JSON Schema):" in done.stdout

    as_json = flowhost("plugins", "describe", "echo", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert (data["name"], data["version"], data["transport"]) == ("echo", "1.2.0", "local")
    assert data["idempotent"] is False
    assert data["input_schema"]["required"] == ["text"]
    assert {"text", "length", "data", "tags"} <= data["output_schema"]["properties"].keys()


@pytest.mark.parametrize(("name", "expected"), [
    ("ecoh", "did you mean 'echo'?"),
    ("broken-import", "ModuleNotFoundError"),
    ("misnamed", "something-else"),
])
def test_plugins_describe_an_unusable_name_is_exit_2(name: str, expected: str,
                                                      tmp_path: Path) -> None:
    done = flowhost("plugins", "describe", name, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"flowhost: plugin '{name}'")
    assert expected in done.stderr
    assert done.stdout == ""
    assert_no_traceback(done)


# ------------------------------------------------------------------- manual.timeout

ASKS_WITH_TIMEOUT = """
workflow_id: asks
steps:
  - id: f
    plugin: fail
    inputs: {kind: intervention, message: needs a person}
    manual: {timeout: 1, default: skip}
  - {id: after, plugin: echo, inputs: {text: $f.never}}
  - {id: other, plugin: echo, inputs: {text: fine}}
"""


def test_a_terminal_prompt_gives_up_after_the_timeout_and_says_what_applied(
        write_spec: WriteSpec, tmp_path: Path) -> None:
    import pty
    import select

    spec = write_spec(ASKS_WITH_TIMEOUT)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal, which nobody answers
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "flowhost", "run", str(spec),
                                  "--no-progress", "--json-out", "r.json"])
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child is gone: its terminal closed
                    break
                if not chunk:
                    break
                seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "Choose [r]etry" in text
    assert "No answer within 1s: applying the step's manual.default, skip" in text
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    steps = {step["id"]: step for step in result["steps"]}
    assert steps["f"]["status"] == "skipped" and steps["after"]["status"] == "skipped"
    assert steps["f"]["interventions"][-1]["by"] == "timeout"
    assert result["outputs"]["other"]["text"] == "fine"


def test_a_waiting_runs_timeout_counts_when_the_run_is_taken_up_again(
        write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = write_spec(ASKS_WITH_TIMEOUT)
    waited = flowhost("run", str(spec), "--no-progress", "--on-manual", "wait", cwd=tmp_path)
    assert waited.returncode == 3, waited.stdout + waited.stderr
    run_id = waited.stdout.splitlines()[0].removeprefix("run_id: ")
    shown = json.loads(flowhost("runs", "show", run_id, "--json", cwd=tmp_path).stdout)
    assert shown["status"] == "waiting"
    # Past the question's deadline nobody applied the default (no process had the run):
    # the next one that takes it does, and a person's answer after it comes second.
    time.sleep(1.2)
    late = flowhost("runs", "resolve", run_id, "f", "--action", "retry", cwd=tmp_path)
    assert late.returncode == 2
    assert "already decided (skip), by timeout" in late.stderr, late.stderr
    done = flowhost("resume", run_id, "--no-progress", "--json-out", "r.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    steps = {step["id"]: step for step in result["steps"]}
    assert steps["f"]["status"] == "skipped" and steps["after"]["status"] == "skipped"
    assert steps["f"]["interventions"][-1]["by"] == "timeout"
    assert "Step f: skip chosen by timeout" in result["learnings"]["modifications"]


# ----------------------------------------------------------------------------- Ctrl-C


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    """Put the lines of ``stream`` in ``lines`` (None at the end), so that waits can time out."""
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.mark.parametrize("plugin", ["sleeper", "sync-sleeper"])
def test_ctrl_c_exits_130_soon(plugin: str, write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = write_spec(f"""
        workflow_id: nap
        steps:
          - {{id: nap, plugin: {plugin}, inputs: {{seconds: 10}}}}
    """)
    argv = [sys.executable, "-m", "flowhost", "run", str(spec), "--no-progress"]
    lines: queue.Queue[str | None] = queue.Queue()
    with subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            seen: list[str] = []
            deadline = time.monotonic() + 30
            while not any(f"nap ({plugin}) started" in line for line in seen):
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
                assert line is not None, "".join(seen)
                seen.append(line)
            interrupted = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=5)
            took = time.monotonic() - interrupted
            assert proc.stderr is not None
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
    assert code == 130, stderr
    assert took < 3, took
    assert "flowhost resume" in stderr
    assert "Traceback" not in stderr


# ------------------------------------------------------------ the SDK and the host


def _host_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each ``import flowhost[.x]`` / ``from flowhost[.x] import y`` in a
    file, at any depth; ``flowhost_sdk`` and relative imports are fine."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        found += [(node.lineno, module) for module in modules
                  if module == "flowhost" or module.startswith("flowhost.")]
    return found


def test_the_host_import_scan_finds_them(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import flowhost_sdk\nfrom flowhost_sdk import Plugin\nfrom . import x\n"
                      "def f():\n    from flowhost.checks import run_check\n"
                      "    import os, flowhost\n")
    assert _host_imports(sample) == [(5, "flowhost.checks"), (6, "flowhost")]


def test_the_sdk_never_imports_the_host() -> None:
    """The SDK is all a plugin author installs (the samples are checked in
    tests/sample_plugins/test_sample_packaging.py)."""
    files = sorted(SDK.rglob("*.py"))
    assert len(files) > 5
    offenders = [f"{path.relative_to(REPO)}:{line}: {module}"
                 for path in files for line, module in _host_imports(path)]
    assert offenders == []


def test_importing_all_of_the_sdk_loads_no_host_module(tmp_path: Path) -> None:
    modules = sorted({".".join(p.relative_to(SDK.parent).with_suffix("").parts)
                      .removesuffix(".__init__") for p in SDK.rglob("*.py")
                      if p.name != "__main__.py"})
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'flowhost' "
            "or m.startswith('flowhost.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_json_out_writes_through_a_symlink_and_into_a_fifo(tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: {text: hi}}\n",
                    encoding="utf-8")
    target = tmp_path / "target.json"
    target.write_text("old", encoding="utf-8")
    (tmp_path / "link.json").symlink_to(target)
    done = flowhost("run", str(spec), "--json-out", "link.json", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads(target.read_text(encoding="utf-8"))["status"] == "success"

    fifo = tmp_path / "result.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    done = flowhost("run", str(spec), "--json-out", str(fifo), "--no-progress", cwd=tmp_path)
    reader.join(timeout=30)
    assert done.returncode == 0, done.stderr
    assert fifo.exists() and not fifo.is_file()  # still the FIFO
    assert json.loads(received[0])["outputs"]["echo"]["text"] == "hi"


def test_json_out_that_cannot_be_written_is_exit_2_before_the_run(tmp_path: Path) -> None:
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow_id: w\nsteps:\n  - {plugin: file-writer, inputs: {directory: "
                    f"'{tmp_path}/made'}}}}\n", encoding="utf-8")
    done = flowhost("run", str(spec), "--json-out", "/proc/nope.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "--json-out /proc/nope.json: cannot write there" in done.stderr
    assert not (tmp_path / "made").exists()  # nothing ran


OTHER_ECHO = '''
from pydantic import BaseModel
from flowhost_sdk import Plugin

class Echo(Plugin):
    name = "echo"
    version = "9.0.0"

    class Inputs(BaseModel):
        word: str

    class Outputs(BaseModel):
        said: str

    async def invoke(self, inputs, ctx):
        return self.Outputs(said=inputs.word * 2)
'''


def test_two_packages_offering_one_name_use_the_listed_one_and_say_so(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "other_echo-9.0.0.dist-info"
    dist.mkdir(parents=True)
    (site / "other_echo.py").write_text(OTHER_ECHO, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other-echo\nVersion: 9.0.0\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text("[flowhost.plugins]\necho = other_echo:Echo\n",
                                           encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site),
                                                       os.environ.get("PYTHONPATH")]))}
    listed = flowhost("plugins", "list", cwd=tmp_path, env=env)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("echo "))
    assert "other_echo:Echo" in line  # first on sys.path
    assert "flowhost_test_plugins.basic:Echo" in listed.stderr  # the hidden one, named
    (tmp_path / "wf.yaml").write_text("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: "
                                      "{word: ab}}\n", encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", "--json-out", "r.json", cwd=tmp_path,
                    env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["outputs"]["echo"] == {"said": "abab"}
    checked = flowhost("plugins", "list", "--check", cwd=tmp_path, env=env)
    line = next(x for x in checked.stdout.splitlines() if x.startswith("echo "))
    assert "BROKEN" in line and "same name" in line
