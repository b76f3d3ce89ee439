"""Wrong answers and hangs under faults (found by probing the CLI as an adversary would):
each test runs the real ``flowhost`` and checks that a fault ends as a named failure with the
right exit code, never as "success, exit 0", a hang, or a secret printed."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowhost.events import EventBus, RunStarted, StepStarted
from flowhost.intervene import InterventionRequest, TerminalIntervener
from flowhost.progress import human_duration
from flowhost.recovery import MAX_RETRY_AFTER_S, decide
from flowhost.redact import Redactor
from flowhost.spec import RetryPolicy
from flowhost.store import RunRecord, Store, StoreListener


def flowhost(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def run_spec(tmp_path: Path, spec: str, *flags: str, env: dict[str, str] | None = None,
             timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", "--json-out", "result.json", *flags,
                    cwd=tmp_path, env=env, timeout=timeout)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    return done, result


# -- 1. an exception inside a step's task never ends as success ----------------------------

@pytest.mark.parametrize("sync", [False, True], ids=["in-coroutine", "in-thread"])
@pytest.mark.parametrize(("what", "named"), [
    ("base", "BaseException"),
    ("cancelled", "CancelledError"),
    ("keyboard", "KeyboardInterrupt"),
    ("system-exit", "SystemExit"),
    ("recursion", "RecursionError"),
])
def test_a_plugin_raising_anything_fails_its_step_with_the_error_named(
        tmp_path: Path, what: str, named: str, sync: bool) -> None:
    done, result = run_spec(tmp_path, f"""
workflow_id: raising
steps:
  - {{id: r, plugin: raiser, inputs: {{what: {what}, sync: {str(sync).lower()}}}}}
""")
    assert done.returncode == 1, done.stdout + done.stderr
    assert result["status"] == "failed"
    step = result["steps"][0]  # type: ignore[index]
    assert step["status"] == "failed"
    assert named in f"{step['error_type']} {step['error']}"
    assert "step 'None'" not in done.stdout


def test_a_retry_after_without_bound_is_capped_and_shown() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=0)
    decision = decide(kind="transient", attempt=1, policy=policy, fallbacks_left=0,
                      manual=False, retry_after=1e308)
    assert decision.action == "retry"
    assert decision.delay_s == MAX_RETRY_AFTER_S
    nan = decide(kind="transient", attempt=1, policy=policy, fallbacks_left=0, manual=False,
                 retry_after=math.nan)
    assert nan.delay_s == 0.0


@pytest.mark.parametrize(("seconds", "shown"), [
    (math.inf, "forever"), (-math.inf, "0ms"), (math.nan, "0ms"), (1e308, "forever"),
    (86400.0, "1d 00h"), (93784.0, "1d 02h"), (3725.0, "1h 02m"), (0.85, "850ms"),
])
def test_durations_of_any_size_are_shown(seconds: float, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_a_bookkeeping_error_fails_the_run_instead_of_succeeding() -> None:
    """A listener (or any part of the engine's own work) that raises while a step ends must
    not leave the run reporting success."""
    from flowhost.catalog import Catalog
    from flowhost.engine import Engine
    from flowhost.spec_loading import parse_spec
    from flowhost.static import check

    plan = check(parse_spec("workflow_id: w\nsteps: [{id: a, plugin: noop}, "
                            "{id: b, plugin: noop, inputs: {value: $a.value}}]\n"),
                 Catalog(), {})
    bus = EventBus()
    broken = {"done": False}

    def breaks_once(event: object) -> None:
        if type(event).__name__ == "StepFinished" and not broken["done"]:
            broken["done"] = True
            raise ZeroDivisionError("a listener broke")

    bus.subscribe(breaks_once)
    status = asyncio.run(Engine(plan, bus, env={}).run())
    assert status == "failed"
    assert bus.history is not None
    finished = bus.history[-1]
    assert "ZeroDivisionError" in getattr(finished, "message", "")


# -- 2. text that is not valid Unicode never hangs a run ------------------------------------

@pytest.mark.parametrize(("nested", "field"), [(False, "name"), (True, "names.1")])
def test_outputs_with_a_lone_surrogate_are_invalid_outputs_naming_the_field(
        tmp_path: Path, nested: bool, field: str) -> None:
    done, result = run_spec(tmp_path, f"""
workflow_id: undecodable
steps:
  - {{id: u, plugin: undecodable, inputs: {{nested: {str(nested).lower()}}}}}
""", timeout=30)
    assert done.returncode == 1
    step = result["steps"][0]  # type: ignore[index]
    assert step["error_type"] == "InvalidOutputs"
    assert f"field '{field}'" in step["error"] and "not valid Unicode" in step["error"]
    listed = flowhost("runs", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "failed"


def test_a_checkpoint_that_cannot_be_encoded_fails_with_a_message(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    record: RunRecord = store.create_run(
        run_id="r1", workflow_id="w", spec_text="", spec_path="w.yaml", spec_redacted=False,
        overrides=[], cwd=str(tmp_path), total_steps=1)
    failures: list[str] = []
    listener = StoreListener(store, record, on_failure=failures.append)
    listener(RunStarted(run_id="r1", workflow_id="w", description="", total_steps=1,
                        steps=(("s", "p", ""),)))
    listener(StepStarted("r1", "s", "p", "caf\udce9", 1, 1))
    listener.close()  # the pending StepStarted is written now, and cannot be
    assert failures and "not valid Unicode" in failures[0]
    assert listener.failure == failures[0]
    store.close()
    with sqlite3.connect(tmp_path / "state" / "state.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # RunStarted


# -- 5. a slow pattern obeys the step's timeout and Ctrl-C ----------------------------------

CATASTROPHIC = """
workflow_id: slow-pattern
steps:
  - id: e
    plugin: echo
    inputs: {text: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"}
    timeout: 1
    validation: [{output: {field: text, matches: "(a|aa)+$"}}]
"""


def test_a_catastrophic_pattern_is_stopped_at_the_step_timeout(tmp_path: Path) -> None:
    # The subprocess timeout is the bound: before the fix the match ran for hours.
    done, result = run_spec(tmp_path, CATASTROPHIC, timeout=60)
    assert done.returncode == 1
    step = result["steps"][0]  # type: ignore[index]
    assert step["error_type"] == "TimeoutError"
    assert "in its validation" in step["error"]


def test_ctrl_c_stops_a_catastrophic_pattern(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(CATASTROPHIC.replace("timeout: 1", "timeout: 600"),
                                      encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "flowhost", "run", "wf.yaml",
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    while "echoing" not in (line := proc.stdout.readline()):
        assert line, proc.communicate()
    time.sleep(0.5)  # inside the match now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "flowhost resume" in err


# -- 6. after a person aborted, nobody is asked again ---------------------------------------

async def test_no_question_is_asked_after_a_person_aborted() -> None:
    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        return "a"

    requests = [InterventionRequest(step_id=f"s{i}", label=str(i), plugin="fail",
                                    error="it broke", error_type="PermanentError", hint=None,
                                    attempts=()) for i in (1, 2)]
    with open(os.devnull, "w") as devnull:
        intervener = TerminalIntervener(read=read, out=devnull)
        first, second = await asyncio.gather(*(intervener.resolve(r) for r in requests),
                                             return_exceptions=True)
    assert getattr(first, "action", None) == "abort"
    assert isinstance(second, asyncio.CancelledError)
    assert len(asked) == 1


async def test_a_persons_abort_asks_once_and_names_the_person(tmp_path: Path) -> None:
    from flowhost.catalog import Catalog
    from flowhost.engine import Engine
    from flowhost.spec_loading import parse_spec
    from flowhost.static import check

    steps = ", ".join(f"{{id: s{i}, plugin: fail, on_failure: continue}}" for i in range(4))
    plan = check(parse_spec(f"workflow_id: w\nsteps: [{steps}]\n"), Catalog(), {})
    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        return "a"

    with open(os.devnull, "w") as devnull:
        bus = EventBus()
        intervener = TerminalIntervener(read=read, out=devnull)
        status = await Engine(plan, bus, env={}, intervener=intervener).run()
    assert status == "aborted"
    assert len(asked) == 1
    assert bus.history is not None
    reasons = {getattr(e, "reason", None) for e in bus.history
               if type(e).__name__ == "StepFinished" and e.status == "cancelled"}  # type: ignore[attr-defined]
    assert reasons == {"run aborted by the user at step 's0'"}


# -- 7. secrets in plugin logs and in pieces -------------------------------------------------

def test_a_secret_logged_by_a_plugin_is_masked(tmp_path: Path) -> None:
    secret = "hunter2-very-secret-token"
    done, _ = run_spec(tmp_path, """
workflow_id: chatty
steps:
  - {id: c, plugin: chatty, inputs: {token: "${secret.TOKEN}"}}
""", env={"TOKEN": secret})
    assert done.returncode == 0, done.stderr
    assert "token is ***" in done.stderr
    assert secret not in done.stdout + done.stderr


def test_pieces_of_a_secret_split_by_a_shell_are_masked_everywhere(tmp_path: Path) -> None:
    secret = "abc&defghijklmnopqrstuvwxyz0123"
    done, result = run_spec(tmp_path, """
workflow_id: split
steps:
  - id: e
    plugin: echo
    inputs: {text: hi}
    validation:
      - command: {run: "echo shell-${secret.X} && exit 4", shell: true}
""", env={"X": secret})
    assert done.returncode == 1
    piece = "defghijklmnopqrstuvwxyz0123"
    text = json.dumps(result)
    assert "exit" in text and piece not in text
    assert piece not in done.stdout + done.stderr
    with sqlite3.connect(tmp_path / ".flowhost" / "state.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert piece not in dump and secret not in dump


def test_fragments_shorter_than_the_minimum_stay_readable() -> None:
    redactor = Redactor(["AAAsecret1"])
    assert redactor.text("no secret here") == "no secret here"
    assert redactor.text("got AAAsecret1 and AAAsecre") == "got *** and ***"
