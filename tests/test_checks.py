"""The validation check kinds (flowhost.checks)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowhost import checks
from flowhost.checks import (
    CheckArgsError,
    CheckContext,
    CheckLoadError,
    UnknownCheckKind,
    get_check,
    known_kinds,
    parse_check_args,
    parse_pytest_summary,
)
from flowhost.checks import registry as check_registry
from flowhost.checks import run_check as _run_check
from flowhost.events import CheckResult

# ------------------------------------------------------------------------------- helpers


async def run_check(kind: str, args: Any, ctx: CheckContext | None = None) -> CheckResult:
    """A check as a run in this test process's environment would run it (a check's own
    default environment is empty: a run passes its own)."""
    return await _run_check(kind, args, ctx or CheckContext(env=os.environ))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# ---------------------------------------------------------------------------- files_exist


async def test_files_exist_passes_for_files_and_dirs(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    (tmp_path / "pkg").mkdir()
    result = await run_check(
        "files_exist",
        ["main.py", "pkg", str(tmp_path / "main.py")],
        CheckContext(workdir=str(tmp_path)),
    )
    assert result.passed, result.message
    assert result.kind == "files_exist"
    assert result.duration_s > 0


async def test_files_exist_names_the_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    result = await run_check(
        "files_exist",
        ["main.py", "app/routes.py", "README.md"],
        CheckContext(workdir=str(tmp_path)),
    )
    assert not result.passed
    assert "app/routes.py" in result.message and "README.md" in result.message
    assert "main.py" not in result.message
    assert result.details["missing"] == ["app/routes.py", "README.md"]


async def test_files_exist_accepts_a_single_string(tmp_path: Path) -> None:
    result = await run_check("files_exist", str(tmp_path))
    assert result.passed


# -------------------------------------------------------------------------- python_syntax

BAD_SOURCE = "x = 1\ny = 2\ndef broken(:\n    pass\n"


async def test_python_syntax_passes_for_valid_code(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("def f() -> int:\n    return 1\n")
    # an invalid escape is a warning, not an error, even with warnings as errors
    (tmp_path / "warns.py").write_text('pattern = "\\d+"\n')
    result = await run_check(
        "python_syntax", ["ok.py", "warns.py"], CheckContext(workdir=str(tmp_path))
    )
    assert result.passed, result.message
    assert result.details["files"] == 2
    assert not (tmp_path / "__pycache__").exists()  # no bytecode written


async def test_python_syntax_points_at_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("a = 1\n")
    (tmp_path / "bad.py").write_text(BAD_SOURCE)
    result = await run_check(
        "python_syntax", ["ok.py", "bad.py"], CheckContext(workdir=str(tmp_path))
    )
    assert not result.passed
    assert result.message.startswith("bad.py:3: "), result.message


async def test_python_syntax_walks_a_directory_but_skips_venvs_and_hidden_dirs(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "sub" / "bad.py").write_text("def f(\n")
    (src / "pkg" / "notes.txt").write_text("def (")  # not Python
    for skipped in (".venv/lib", "env", "__pycache__"):
        (src / skipped).mkdir(parents=True)
        (src / skipped / "py2.py").write_text("print 'old'\n")
    (src / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    result = await run_check("python_syntax", [str(src)])
    assert not result.passed
    assert result.message.startswith(f"{src}/pkg/sub/bad.py:1: "), result.message
    assert result.details["files"] == 2
    assert len(result.details["errors"]) == 1


async def test_python_syntax_missing_path_fails(tmp_path: Path) -> None:
    result = await run_check("python_syntax", [str(tmp_path / "nope.py")])
    assert not result.passed
    assert "nope.py: not found" in result.message


# ------------------------------------------------------------------------------ importable


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    (lib / "onlyhere_pkg").mkdir(parents=True)
    (lib / "onlyhere_pkg" / "__init__.py").write_text("VALUE = 1\n")
    (lib / "onlyhere_boom.py").write_text("raise RuntimeError('boom at import')\n")
    return lib


async def test_importable_finds_a_module_only_under_path(module_dir: Path) -> None:
    path_before = list(sys.path)
    result = await run_check("importable", {"module": "onlyhere_pkg", "path": str(module_dir)})
    assert result.passed, result.message
    assert sys.path == path_before
    assert "onlyhere_pkg" not in sys.modules
    assert not (module_dir / "onlyhere_pkg" / "__pycache__").exists()


async def test_importable_relative_path_uses_workdir(module_dir: Path) -> None:
    ctx = CheckContext(workdir=str(module_dir.parent))
    result = await run_check("importable", {"module": "onlyhere_pkg", "path": "lib"}, ctx)
    assert result.passed, result.message


async def test_importable_missing_module_shows_the_error(module_dir: Path) -> None:
    result = await run_check("importable", {"module": "onlyhere_pkg"})  # no path: not found
    assert not result.passed
    assert "ModuleNotFoundError" in result.message and "onlyhere_pkg" in result.message
    assert "ModuleNotFoundError" in result.details["output_tail"]


async def test_importable_reports_an_import_time_exception(module_dir: Path) -> None:
    result = await run_check("importable", {"module": "onlyhere_boom", "path": str(module_dir)})
    assert not result.passed
    assert "RuntimeError: boom at import" in result.message


async def test_importable_missing_path_fails(tmp_path: Path) -> None:
    result = await run_check("importable", {"module": "x", "path": str(tmp_path / "nope")})
    assert not result.passed
    assert "nope" in result.message


# --------------------------------------------------------------------------------- http_ok


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/": 200, "/broken": 500}.get(self.path, 404)
        body = f"status {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/health"


async def test_http_ok_passes_on_the_expected_status(http_url: str) -> None:
    result = await run_check("http_ok", {"url": f"{http_url}/"})
    assert result.passed, result.message
    assert "200" in result.message
    result = await run_check("http_ok", {"url": f"{http_url}/missing", "status": 404})
    assert result.passed, result.message


async def test_http_ok_fails_on_another_status(http_url: str) -> None:
    result = await run_check("http_ok", {"url": f"{http_url}/broken", "timeout": 2})
    assert not result.passed
    assert result.message == f"GET {http_url}/broken returned 500, expected 200"
    assert result.details["status"] == 500
    assert "status 500" in result.details["body"]


async def test_http_ok_connection_refused(refused_url: str) -> None:
    result = await run_check("http_ok", {"url": refused_url, "timeout": 2})
    assert not result.passed
    assert result.message == f"GET {refused_url}: connection refused"


# --------------------------------------------------------------------------------- command


async def test_command_success_carries_exit_code_and_output() -> None:
    result = await run_check("command", {"run": _py("print('hello')")})
    assert result.passed, result.message
    assert result.details["exit_code"] == 0
    assert result.details["output_tail"] == "hello"
    assert "test_results" not in result.details


async def test_command_failure_shows_exit_code_and_last_line() -> None:
    code = "import sys; print('working'); sys.stderr.write('it broke\\n'); sys.exit(3)"
    result = await run_check("command", {"run": _py(code)})
    assert not result.passed
    assert "exited 3" in result.message and "it broke" in result.message
    assert result.details["exit_code"] == 3
    assert result.details["output_tail"] == "working\nit broke"  # stdout and stderr


async def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    result = await run_check("command", {"run": ["sh", "-c", script], "timeout": 0.5})
    assert time.monotonic() - started < 3
    assert not result.passed
    assert result.message.startswith("`sh -c 'sleep 30 &")
    assert result.message.endswith("` timed out after 0.5 s")
    assert result.details["timed_out"] is True
    assert _wait_dead(int(pidfile.read_text())), "the grandchild survived the timeout"


async def test_a_command_that_writes_without_end_is_stopped(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """As found: ``command: yes`` filled /tmp at 1 GB/s until its timeout (bugs 9)."""
    monkeypatch.setattr(checks.process, "MAX_OUTPUT_BYTES", 1024 * 1024)
    result = await run_check("command", {"run": "yes", "timeout": 600})
    assert not result.passed
    assert result.message == "`yes` wrote more than 1 MiB of output, and was stopped"
    assert result.details["exit_code"] == -signal.SIGKILL
    assert result.details["output_tail"].startswith("y\ny\n")


def test_a_check_that_writes_too_much_fails_the_run_saying_so(tmp_path: Path) -> None:
    """Through the CLI, with the real bound: 70 MB written, then a wait that would outlast
    the test's own time limit."""
    spec = ("workflow_id: loud\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
            "final_validation:\n  - command: {run: [sh, -c, 'head -c 70000000 /dev/zero; "
            "sleep 600'], timeout: 900}\n")
    (tmp_path / "loud.yaml").write_text(spec, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "run", "loud.yaml",
                           "--no-progress", "--json-out", "out.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    check = json.loads((tmp_path / "out.json").read_text())["final_validation"][0]
    assert not check["passed"]
    assert check["message"].endswith("wrote more than 64 MiB of output, and was stopped")
    assert len(check["details"]["output_tail"]) < 300_000


async def test_command_that_leaves_a_child_running_does_not_wait_for_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    script = f"sleep 30 & echo $! > {pidfile}; echo done"
    result = await run_check("command", ["sh", "-c", script])
    assert time.monotonic() - started < 2
    assert result.passed, result.message
    assert result.details["output_tail"] == "done"
    pid = int(pidfile.read_text())
    assert _alive(pid)  # a server started with `&` may outlive its command
    os.kill(pid, signal.SIGKILL)


async def test_cancelling_a_command_kills_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(
        run_check("command", ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"])
    )
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _wait_dead(int(pidfile.read_text()))


async def test_command_cwd_and_env(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    code = "import os; print(os.getcwd()); print(os.environ['FH_NAME'], os.environ['FH_PORT'])"
    args = {"run": _py(code), "cwd": "work", "env": {"FH_NAME": "demo", "FH_PORT": 8000}}
    result = await run_check("command", args, CheckContext(workdir=str(tmp_path)))
    assert result.passed, result.message
    assert result.details["output_tail"] == f"{tmp_path / 'work'}\ndemo 8000"


async def test_command_missing_cwd_fails(tmp_path: Path) -> None:
    result = await run_check("command", {"run": "true", "cwd": str(tmp_path / "nope")})
    assert not result.passed
    assert "nope" in result.message


async def test_command_string_is_split_without_a_shell_unless_asked() -> None:
    ctx = CheckContext(env={**os.environ, "HOME": "/home/flowhost-test"})
    literal = await run_check("command", {"run": "echo '$HOME' \"a b\" $HOME"}, ctx)
    assert literal.details["output_tail"] == "$HOME a b $HOME"
    expanded = await run_check("command", {"run": "echo $HOME", "shell": True}, ctx)
    assert expanded.details["output_tail"] == "/home/flowhost-test"
    piped = await run_check("command", {"run": "echo one | tr o O", "shell": True})
    assert piped.details["output_tail"] == "One"


async def test_command_output_tail_keeps_the_last_40_lines() -> None:
    result = await run_check("command", _py("for i in range(100): print('line', i)"))
    lines = result.details["output_tail"].splitlines()
    assert len(lines) == 40
    assert lines[0] == "line 60" and lines[-1] == "line 99"


async def test_command_not_found() -> None:
    result = await run_check("command", "flowhost-no-such-tool --version")
    assert not result.passed
    assert result.message == "command not found: flowhost-no-such-tool"


async def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")  # no x bit
    result = await run_check("command", [str(script)])
    assert not result.passed
    assert result.message == f"command not executable: {script}"


async def test_command_redacts_message_and_output_tail() -> None:
    ctx = CheckContext(redact=lambda text: text.replace("s3cret", "***"))
    result = await run_check("command", ["sh", "-c", "echo token=s3cret; exit 2"], ctx)
    assert not result.passed
    assert "s3cret" not in result.message and "s3cret" not in str(result.details)
    assert result.details["output_tail"] == "token=***"
    assert "token=***" in result.message


async def test_command_reports_test_results_of_a_real_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import pytest
            def test_a(): pass
            def test_b(): pass
            def test_c(): assert False
            @pytest.mark.skip
            def test_d(): pass
            @pytest.mark.xfail
            def test_e(): assert False
            """
        )
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"]
    result = await run_check("command", {"run": argv, "cwd": str(tmp_path)})
    assert not result.passed
    assert result.details["test_results"] == {
        "total": 5,
        "passed": 2,
        "failed": 1,
        "skipped": 2,
        "errors": 0,
    }


async def test_command_success_mentions_test_counts() -> None:
    result = await run_check("command", _py("print('==== 24 passed in 1.20s ====')"))
    assert result.passed
    assert result.details["test_results"]["total"] == 24
    assert "24 passed" in result.message


# ---------------------------------------------------------------------- pytest summaries


def _counts(total: int, passed: int, failed: int, skipped: int, errors: int = 0) -> dict[str, int]:
    return {
        "total": total,
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "errors": errors,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("===== 3 failed, 21 passed, 1 skipped in 0.52s =====", _counts(25, 21, 3, 1)),
        ("..........\n21 passed in 0.30s\n", _counts(21, 21, 0, 0)),
        (
            "==== 1 failed, 1 passed, 1 xfailed, 1 xpassed, 2 warnings in 0.12s ====",
            _counts(4, 2, 1, 1),
        ),
        (
            "Interrupted: 2 errors during collection\n=========== 2 errors in 0.10s ===========",
            _counts(2, 0, 2, 0, errors=2),
        ),
        ("1 failed, 5 passed, 1 error in 0.4s", _counts(7, 5, 2, 0, errors=1)),
        ("============ no tests ran in 0.01s ============", _counts(0, 0, 0, 0)),
        ("== 4 passed, 1 deselected in 73.21s (0:01:13) ==", _counts(4, 4, 0, 0)),
        ("\x1b[32m\x1b[1m5 passed\x1b[0m\x1b[32m in 0.02s\x1b[0m", _counts(5, 5, 0, 0)),
        ("=== 2 passed in 0.05 seconds ===", _counts(2, 2, 0, 0)),
        ("1 failed, 2 passed, 1 rerun in 0.3s", _counts(3, 2, 1, 0)),
        ("3 passed, 2 subtests passed in 0.10s", _counts(3, 3, 0, 0)),
        ("=== 1 failed in 0.1s ===\nrerunning\n=== 2 passed in 0.1s ===\n", _counts(2, 2, 0, 0)),
        ("collected 3 items\n\r\n=== 3 passed in 0.01s ===\r\n", _counts(3, 3, 0, 0)),
    ],
)
def test_parse_pytest_summary(text: str, expected: dict[str, int]) -> None:
    assert parse_pytest_summary(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "all good\n", "copied 3 files in 0.2s", "5 tests collected in 0.01s", "Ran 3 tests"],
)
def test_parse_pytest_summary_without_a_summary(text: str) -> None:
    assert parse_pytest_summary(text) is None


# ---------------------------------------------------------------------------------- output

OUTPUTS: dict[str, Any] = {
    "project_path": "./my-api",
    "files_created": ["main.py", "app/routes.py"],
    "port": 8000,
    "debug": True,
    "meta": {"framework": "fastapi", "version": None},
}


@pytest.mark.parametrize(
    ("args", "passed"),
    [
        ({"field": "project_path", "equals": "./my-api"}, True),
        ({"field": "project_path", "equals": "./other"}, False),
        ({"field": "files_created.0", "equals": "main.py"}, True),
        ({"field": "meta.framework", "matches": "^fast"}, True),
        ({"field": "meta.framework", "matches": "^django"}, False),
        ({"field": "port", "matches": r"^\d{4}$"}, True),
        ({"field": "meta.framework", "in": ["fastapi", "flask"]}, True),
        ({"field": "port", "in": [80, 443]}, False),
        ({"field": "debug", "equals": 1}, False),  # a boolean is no number
        ({"field": "meta.version", "equals": None}, True),
        ({"field": "files_created", "type": "array"}, True),
        ({"field": "meta", "type": "object"}, True),
        ({"field": "port", "type": "integer"}, True),
        ({"field": "port", "type": "number"}, True),
        ({"field": "debug", "type": "integer"}, False),
        ({"field": "debug", "type": "boolean"}, True),
        ({"field": "meta.version", "type": "null"}, True),
        ({"field": "project_path", "type": "string"}, True),
        ({"field": "project_path", "type": "array"}, False),
    ],
)
async def test_output_assertions(args: dict[str, Any], passed: bool) -> None:
    result = await run_check("output", args, CheckContext(outputs=OUTPUTS))
    assert result.passed is passed, result.message
    assert args["field"] in result.message


async def test_output_failure_message_shows_value_and_expectation() -> None:
    args = {"field": "files_created.1", "equals": "app/main.py"}
    result = await run_check("output", args, CheckContext(outputs=OUTPUTS))
    assert result.message == 'files_created.1 = "app/routes.py", expected "app/main.py"'


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        ("nope", "no field 'nope' in the outputs (fields there: debug, files_created"),
        ("meta.nope", "no field 'meta.nope'"),
        ("files_created.5", "no item 'files_created.5': files_created is a list of 2"),
        ("files_created.x", "no item 'files_created.x'"),
        ("port.x", "no field 'port.x': port is integer"),
    ],
)
async def test_output_missing_field(field: str, needle: str) -> None:
    result = await run_check(
        "output", {"field": field, "type": "string"}, CheckContext(outputs=OUTPUTS)
    )
    assert not result.passed
    assert needle in result.message


async def test_output_without_outputs_fails() -> None:
    result = await run_check("output", {"field": "x", "equals": 1}, CheckContext())
    assert not result.passed
    assert "no step outputs" in result.message


# ------------------------------------------------------------------- kinds and bad args


def test_unknown_kind_suggests_the_closest() -> None:
    with pytest.raises(UnknownCheckKind) as caught:
        get_check("file_exists")
    assert caught.value.suggestion == "files_exist"
    assert "did you mean 'files_exist'?" in str(caught.value)
    assert "python_syntax" in caught.value.known


async def test_run_check_turns_an_unknown_kind_into_a_failed_result() -> None:
    result = await run_check("http_okay", {"url": "http://x"})
    assert not result.passed
    assert result.kind == "http_okay"
    assert "did you mean 'http_ok'?" in result.message


@pytest.mark.parametrize(
    ("kind", "args", "field", "needle"),
    [
        ("command", {"cwd": "."}, "run", "run is required"),
        ("command", {"run": "x", "tiemout": 3}, "tiemout", "unknown field 'tiemout'"),
        ("command", {"run": "x", "timeout": -1}, "timeout", "timeout: "),
        ("command", {"run": ""}, "run", "empty"),
        ("command", {"run": "echo 'unbalanced"}, None, "run: cannot split"),
        ("http_ok", {"url": "http://x", "status": "ok"}, "status", "status: "),
        ("http_ok", {"url": "localhost:8000"}, "url", "http://"),
        ("importable", {"path": "src"}, "module", "module is required"),
        ("importable", {"module": "my-pkg"}, "module", "dotted module name"),
        ("files_exist", [], None, "at least 1"),
        ("files_exist", ["a", 3], "[1]", "[1]: "),
        ("python_syntax", {"paths": ["a"]}, None, "valid list"),
        ("output", {"field": "a"}, None, "exactly one of equals, matches, in, type"),
        ("output", {"field": "a", "equals": 1, "in": [1]}, None, "(got equals, in)"),
        ("output", {"field": "a", "type": "str"}, "type", "type: "),
        ("output", {"field": "a", "matches": "("}, "matches", "not a valid regular expression"),
    ],
)
def test_bad_args_are_rejected_naming_the_field(
    kind: str, args: Any, field: str | None, needle: str
) -> None:
    with pytest.raises(CheckArgsError) as caught:
        parse_check_args(kind, args)
    assert caught.value.kind == kind
    assert caught.value.field == field
    assert needle in str(caught.value)
    assert str(caught.value).startswith(f"{kind} check: ")


def test_unresolved_references_pass_static_parsing() -> None:
    parse_check_args("files_exist", ["${scaffolder.project_path}/main.py"])
    parse_check_args("http_ok", {"url": "${api.base_url}/health"})
    parse_check_args("importable", {"module": "${scaffolder.package}", "path": "$x.path"})
    parse_check_args("command", {"run": "pytest tests/ --quiet", "cwd": "${s.project_path}"})


def test_shorthands() -> None:
    assert parse_check_args("command", "pytest -q") == checks.CommandArgs(run="pytest -q")
    assert parse_check_args("importable", "pkg") == checks.ImportableArgs(module="pkg")
    url = parse_check_args("http_ok", "http://127.0.0.1:1/")
    assert isinstance(url, checks.HttpOkArgs) and url.status == 200


async def test_bad_args_at_run_time_are_a_failed_result() -> None:
    result = await run_check("command", {"run": "true", "shel": True})
    assert not result.passed
    assert "unknown field 'shel'" in result.message


# --------------------------------------------------------------- entry-point validators

FAKE_MODULE = """
from pydantic import BaseModel, ConfigDict
from flowhost.events import CheckResult

class WordArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str

class SaysWord:
    kind = "says_word"
    Args = WordArgs
    def run(self, args, ctx):  # a plain run: executed in a worker thread
        return CheckResult(self.kind, args.word == "yes", f"said {args.word}")

class Crashes:
    kind = "crashes"
    Args = WordArgs
    async def run(self, args, ctx):
        raise RuntimeError("validator bug")

class NotACheck:
    pass
"""


@pytest.fixture
def fake_validators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "site"
    dist = site / "fake_flowhost_validators-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "fake_flowhost_validators.py").write_text(FAKE_MODULE)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-flowhost-validators\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[flowhost.validators]\n"
        "says_word = fake_flowhost_validators:SaysWord\n"
        "crashes = fake_flowhost_validators:Crashes\n"
        "not_a_check = fake_flowhost_validators:NotACheck\n"
        "broken = fake_flowhost_validators_missing:Nope\n"
        "command = fake_flowhost_validators:SaysWord\n"  # a built-in name always wins
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(check_registry, "_LOADED", {})
    yield
    sys.modules.pop("fake_flowhost_validators", None)


@pytest.mark.usefixtures("fake_validators")
async def test_entry_point_validator_is_listed_without_import_and_runs() -> None:
    kinds = known_kinds()
    assert {"says_word", "crashes", "broken", "files_exist"} <= set(kinds)
    assert kinds.count("command") == 1
    assert "fake_flowhost_validators" not in sys.modules
    result = await run_check("says_word", {"word": "yes"})
    assert result.passed and result.message == "said yes" and result.kind == "says_word"
    assert (await run_check("says_word", {"word": "no"})).passed is False
    assert get_check("command") is check_registry._BUILTINS["command"]


@pytest.mark.usefixtures("fake_validators")
def test_entry_point_validator_args_are_checked() -> None:
    with pytest.raises(CheckArgsError) as caught:
        parse_check_args("says_word", {"word": "yes", "wrod": "yes"})
    assert caught.value.field == "wrod"
    with pytest.raises(UnknownCheckKind) as unknown:
        get_check("say_word")
    assert unknown.value.suggestion == "says_word"


@pytest.mark.usefixtures("fake_validators")
async def test_broken_entry_point_is_a_clear_error() -> None:
    with pytest.raises(CheckLoadError) as caught:
        get_check("broken")
    message = str(caught.value)
    assert "validator 'broken' (fake_flowhost_validators_missing:Nope) failed to load" in message
    assert "ModuleNotFoundError" in message
    result = await run_check("broken", {})
    assert not result.passed and result.message == message
    with pytest.raises(CheckLoadError, match="is not a check"):
        get_check("not_a_check")


@pytest.mark.usefixtures("fake_validators")
async def test_a_crashing_check_becomes_a_failed_result() -> None:
    result = await run_check("crashes", {"word": "x"})
    assert not result.passed
    assert result.message == "crashes check crashed: RuntimeError: validator bug"
