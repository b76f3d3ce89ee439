"""Bad input of every kind ends in exit code 2 with a message that names the file, flag,
step or field at fault — never a traceback, never "internal error" (issue 9, items 1, 2, 8-11).

Most run ``flowhost.cli.main`` in-process, in the test's own directory with its own state
dir; an argument with bytes that are not UTF-8 is passed as Python decodes it from argv (a
lone surrogate such as ``\\udcff`` for the byte 0xff).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowhost.cli import main

QUICK = "workflow_id: quick\nsteps: [{id: e, plugin: echo, inputs: {text: hello}}]\n"


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWHOST_STATE_DIR", raising=False)
    monkeypatch.delenv("FLOWHOST_DEBUG", raising=False)
    (tmp_path / "quick.yaml").write_text(QUICK, encoding="utf-8")


def flowhost(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command; it must exit 2 with a ``flowhost:`` message; return the message."""
    code, out, err = flowhost(capsys, *argv)
    assert code == 2, out + err
    assert "internal error" not in err and "Traceback" not in err, err
    assert err.startswith("flowhost: "), err
    return err


def spec(text: str, name: str = "wf.yaml") -> str:
    Path(name).write_text(text, encoding="utf-8")
    return name


def echo_text(value: str) -> str:
    return spec(f"workflow_id: quick\nsteps:\n  - id: e\n    plugin: echo\n"
                f"    inputs: {{text: {value}}}\n")


# ------------------------------------------------------------- item 8: values in the spec
def test_an_impossible_date_is_reported_at_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "validate", echo_text("2024-02-30"))
    assert "wf.yaml:5:20:" in err
    assert "'2024-02-30' reads as a date" in err and "day is out of range for month" in err
    assert "quote it" in err


@pytest.mark.parametrize("name", ["wf.yaml", "wf.json"])
def test_a_number_too_long_for_python_is_reported(capsys: pytest.CaptureFixture[str],
                                                   name: str) -> None:
    digits = "9" * 5000
    text = (f'{{"workflow_id": "quick", "steps": [{{"id": "e", "plugin": "echo",\n'
            f'"inputs": {{"text": {digits}}}}}]}}')
    err = refused(capsys, "validate", spec(text, name))
    assert f"{name}:2:" in err and "more than 4,300 digits" in err
    assert len(err) < 1000


@pytest.mark.parametrize("value", ["!!int nope", "!!int 09", "!!bool maybe", "!!float nope",
                                   "!!timestamp nope"])
def test_a_value_its_tag_cannot_read_is_reported(capsys: pytest.CaptureFixture[str],
                                                 value: str) -> None:
    tag, text = value.split()
    err = refused(capsys, "validate", echo_text(value))
    assert "wf.yaml:5:20:" in err
    assert f"'{text}' is not a valid {tag} value" in err


def test_a_regex_with_too_many_repetitions_is_a_check_problem(
        capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: quick\nsteps:\n  - id: e\n    plugin: echo\n"
                "    inputs: {text: hi}\n"
                '    validation: [{output: {field: text, matches: "a{99999999999}"}}]\n')
    err = refused(capsys, "validate", name)
    assert "wf.yaml:6:" in err and "step 'e'" in err
    assert "not a valid regular expression" in err


@pytest.mark.parametrize("override", [
    "e.data=" + "[" * 600 + "]" * 600,
    "e.data=" + '{"a":' * 600 + "1" + "}" * 600,
    "e.data=" + "[" * 100_000 + "]" * 100_000,  # deeper than Python's json can read
    "e.data" + ".a" * 500 + "=1",
])
def test_a_set_value_nested_too_deep_is_refused(capsys: pytest.CaptureFixture[str],
                                                override: str) -> None:
    err = refused(capsys, "validate", "quick.yaml", "--set", override)
    assert "--set: " in err and "levels deep" in err and "more than 100" in err
    assert len(err) < 1000  # the value is shown by its ends


def test_a_set_value_as_deep_as_a_spec_may_be_is_taken(
        capsys: pytest.CaptureFixture[str]) -> None:
    nested = "[" * 96 + "]" * 96  # with the document, steps, the step and inputs: 100 levels
    code, _, err = flowhost(capsys, "validate", "quick.yaml", "--set", f"e.tags={nested}")
    assert code == 2 and "levels deep" not in err  # a list of lists is not a list of strings


def test_a_cycle_made_by_set_names_the_set(capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: w\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
                "  - {id: b, plugin: echo, inputs: {text: $a.text}}\n")
    err = refused(capsys, "validate", name, "--set", "a.text=$b.text")
    assert "dependency cycle: a → b → a" in err
    assert "(through the value given by --set a.text=$b.text)" in err


def test_a_cycle_written_in_the_file_names_no_set(capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: w\nsteps:\n  - {id: a, plugin: echo, inputs: {text: $b.text}}\n"
                "  - {id: b, plugin: echo, inputs: {text: $a.text}}\n")
    err = refused(capsys, "validate", name, "--set", "a.tags=[\"x\"]")
    assert "dependency cycle" in err and "--set" not in err


# ------------------------------------------------ item 1: delays and timeouts are bounded
def test_infinite_retry_delays_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: quick\nsteps:\n  - id: e\n    plugin: echo\n"
                "    inputs: {text: hi}\n    retry: {initial_delay: .inf, max_delay: .inf}\n")
    err = refused(capsys, "validate", name)
    assert "wf.yaml:6: step 'e', field 'retry.initial_delay': Input should be a finite number"\
        in err
    assert "field 'retry.max_delay'" in err and "at most 86400 (a day)" in err


@pytest.mark.parametrize(("where", "field", "value"), [
    ("step", "retry.initial_delay", "86401"),
    ("step", "retry.max_delay", ".nan"),
    ("step", "retry.multiplier", "101"),
    ("step", "retry.multiplier", ".inf"),
    ("step", "timeout", "604801"),
    ("step", "timeout", ".inf"),
    ("step", "cache_ttl", ".inf"),
    ("step", "cache.ttl", "1e9"),
    ("top", "defaults.timeout", ".nan"),
    ("top", "breaker.reset_after", ".inf"),
    ("top", "defaults.retry.max_delay", "1e300"),
])
def test_each_delay_and_timeout_is_finite_and_bounded(
        capsys: pytest.CaptureFixture[str], where: str, field: str, value: str) -> None:
    *parents, leaf = field.split(".")
    setting = f"{leaf}: {value}"
    for parent in reversed(parents):
        setting = f"{parent}: {{{setting}}}"
    step = "  - {id: e, plugin: echo, inputs: {text: hi}" + (
        f", {setting}}}" if where == "step" else "}")
    top = f"{setting}\n" if where == "top" else ""
    name = spec(f"workflow_id: quick\n{top}steps:\n{step}\n")
    err = refused(capsys, "validate", name)
    assert f"field '{field}'" in err, err
    assert "wf.yaml:" in err and ("finite number" in err or "less than or equal" in err)


def test_bounded_delays_and_timeouts_still_load(capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: quick\ndefaults: {timeout: 604800}\nbreaker: {reset_after: 604800}\n"
                "steps:\n  - {id: e, plugin: echo, inputs: {text: hi}, timeout: 0.5, "
                "cache: {ttl: 604800}, retry: {max_attempts: 1000, initial_delay: 86400, "
                "multiplier: 100, max_delay: 86400}}\n")
    code, _, err = flowhost(capsys, "validate", name)
    assert code == 0, err
    from flowhost.spec import RetryPolicy

    policy = RetryPolicy(max_attempts=1000, initial_delay=1, multiplier=100, max_delay=60)
    assert policy.delay_before(1000) == 60  # 100.0**998 overflows a float


# --------------------------------------------------- item 2: text that is not UTF-8
@pytest.mark.parametrize(("override", "part"), [
    ("e.text=caf\udce9", "the value"),
    ("e.t\udce9xt=cafe", "the step id or field"),
])
def test_a_set_that_is_not_utf8_is_refused(capsys: pytest.CaptureFixture[str], override: str,
                                           part: str) -> None:
    err = refused(capsys, "run", "quick.yaml", "--no-progress", "--state-dir", "state",
                  "--set", override)
    assert f"--set: '{override.replace(chr(0xdce9), chr(92) + 'xe9')}': {part} is not " \
        "valid UTF-8" in err
    assert not Path("state").exists()  # refused before the run started


@pytest.mark.parametrize(("argv", "label"), [
    (["resume", "\udcff", "--state-dir", "state"], "RUN_ID '\\xff'"),
    (["runs", "show", "\udcff", "--state-dir", "state"], "RUN_ID '\\xff'"),
    (["runs", "list", "--state-dir", "st\udcff"], "--state-dir 'st\\xff'"),
    (["run", "quick.yaml", "--state-dir", "st\udcff"], "--state-dir 'st\\xff'"),
    (["run", "quick.yaml", "--state-dir", "state", "--json-out", "r\udce9.json"],
     "--json-out 'r\\xe9.json'"),
    (["validate", "q\udce9.yaml"], "FILE 'q\\xe9.yaml'"),
])
def test_an_argument_that_is_not_utf8_is_refused(capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], label: str) -> None:
    if argv[0] != "validate":
        assert main(["run", "quick.yaml", "--no-progress", "--state-dir", "state"]) == 0
        capsys.readouterr()
    err = refused(capsys, *argv)
    assert f"flowhost: {label}: not valid UTF-8" in err
    assert not Path("st\udcff").exists()


def test_a_state_dir_from_the_environment_that_is_not_utf8(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWHOST_STATE_DIR", "st\udcff")
    err = refused(capsys, "runs", "list")
    assert "$FLOWHOST_STATE_DIR 'st\\xff': not valid UTF-8" in err


# ------------------------------------------------------------------ item 9: flags
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_result_that_cannot_be_written_is_exit_2_and_the_run_is_recorded(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = flowhost(capsys, "run", "quick.yaml", "--no-progress", "--state-dir",
                              "state", "--json-out", "/dev/full")
    assert code == 2, err
    assert "flowhost: --json-out /dev/full: could not write the result (No space left on " \
        "device)" in err
    run_id = out.splitlines()[0].removeprefix("run_id: ")
    assert f"`flowhost runs show {run_id} --json`" in err
    code, out, err = flowhost(capsys, "runs", "show", run_id, "--json", "--state-dir", "state")
    assert code == 0 and '"status": "success"' in out


@pytest.mark.parametrize("flag", ["--json-out", "--state-dir"])
def test_a_path_part_too_long_names_the_flag(capsys: pytest.CaptureFixture[str],
                                             flag: str) -> None:
    long = "x" * 300
    argv = ["run", "quick.yaml", "--no-progress", "--state-dir", "state"]
    argv += [flag, f"{long}/r.json" if flag == "--json-out" else long]
    err = refused(capsys, *argv)
    assert f"flowhost: {flag} 'xxxx" in err and "characters): the path, or a part of it, is " \
        "too long (File name too long)" in err
    err = refused(capsys, "runs", "list", "--state-dir", long)
    assert "--state-dir" in err and "too long" in err


def test_json_out_a_symlink_to_itself(capsys: pytest.CaptureFixture[str]) -> None:
    os.symlink("loop.json", "loop.json")
    err = refused(capsys, "run", "quick.yaml", "--no-progress", "--state-dir", "state",
                  "--json-out", "loop.json")
    assert "--json-out loop.json: a symbolic link on the path loops" in err
    from argparse import Namespace

    from flowhost.commands.run import json_out_path
    from flowhost.problems import UserInputError

    with pytest.raises(UserInputError, match=r"--json-out loop\.json: a symbolic link"):
        json_out_path(Namespace(json_out="loop.json"))  # the check itself, without the CLI's


@pytest.mark.parametrize("limit", ["99999999999999999999999", "9" * 5000])
def test_a_huge_runs_list_limit_means_all_runs(capsys: pytest.CaptureFixture[str],
                                               limit: str) -> None:
    assert main(["run", "quick.yaml", "--no-progress", "--state-dir", "state"]) == 0
    capsys.readouterr()
    code, out, err = flowhost(capsys, "runs", "list", "--limit", limit, "--state-dir", "state")
    assert code == 0, err
    assert "quick" in out


def test_a_huge_max_parallel_is_refused_briefly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "quick.yaml", "--max-parallel", "9" * 5000])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --max-parallel: '9999" in err and "(5,000 characters) is too large" in err


# --------------------------------------------------- item 10: long values, shortened
def test_a_long_wrong_value_is_shown_by_its_ends(capsys: pytest.CaptureFixture[str]) -> None:
    long = "a" * 1_000_000
    name = spec(f"workflow_id: quick\nsteps:\n  - id: n\n    plugin: numbers\n"
                f"    inputs: {{count: {long}}}\n")
    err = refused(capsys, "validate", name)
    shown = f"'{'a' * 20}…{'a' * 20}' (1,000,000 characters)"
    assert f"value {shown} is rejected: {shown} is not of type 'integer'" in err
    assert len(err) < 1000


def test_short_wrong_values_read_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    name = spec("workflow_id: quick\nsteps:\n  - id: n\n    plugin: numbers\n"
                "    inputs: {count: abc}\n")
    err = refused(capsys, "validate", name)
    assert "value 'abc' is rejected: 'abc' is not of type 'integer'" in err


def test_long_ids_keys_and_set_values_are_shortened(capsys: pytest.CaptureFixture[str]) -> None:
    long = "b" * 100_000
    name = spec(f"workflow_id: quick\nsteps:\n  - id: '{long}!'\n    plugin: echo\n"
                f"    inputs: {{text: hi}}\n    ? {long}\n    : 1\n")
    err = refused(capsys, "validate", name, "--set", f"e.text={long}", "--set", f"{long}.x=1")
    assert len(err) < 3000, err[:3000]
    assert "(100,001 characters)" in err and "is not a valid step id" in err


# ------------------------------------------------ item 11: resume while another runs it
def test_resume_without_id_names_the_run_another_process_runs(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec("workflow_id: slow\nsteps: [{id: s, plugin: sleeper, inputs: {seconds: 30}}]\n",
         "slow.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "flowhost", "run", "slow.yaml",
                             "--no-progress", "--state-dir", "state"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip().removeprefix("run_id: ")
        deadline = time.monotonic() + 20
        while True:  # the run's lock is taken once it is recorded
            err = refused(capsys, "resume", "--state-dir", "state")
            if "being run by another process" in err or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert f"run {run_id} is being run by another process (pid {proc.pid})" in err
        assert "no unfinished run" not in err
    finally:
        proc.kill()
        proc.communicate(timeout=10)
