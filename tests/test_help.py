"""``run --help``, ``resume --help`` and ``runs resolve --help`` describe their arguments
and the exit codes (CONTRACT §6)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _help(*command: str) -> str:
    done = subprocess.run([sys.executable, "-m", "flowhost", *command, "--help"],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.parametrize("command", [("run",), ("resume",)])
def test_run_and_resume_say_their_exit_codes(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert "exit codes:" in text
    for code, meaning in [("0", "success"), ("1", "failed"), ("2", "bad input"),
                          ("3", "waiting"), ("130", "interrupted")]:
        assert any(line.split()[:1] == [code] and meaning in line
                   for line in text.splitlines()), (code, text)


def test_runs_resolve_describes_its_arguments_and_exit_codes() -> None:
    text = _help("runs", "resolve")
    assert "RUN_ID                the waiting run" in text
    assert "STEP                  the id of the step that asks" in text
    assert "retry: the whole ladder again" in text
    assert "exit codes:" in text and "2  bad input" in text


def test_plugins_list_shows_the_package_and_with_check_the_plugins_own_version() -> None:
    def listed(*flags: str) -> dict[str, list[str]]:
        done = subprocess.run([sys.executable, "-m", "flowhost", "plugins", "list", *flags],
                              capture_output=True, text=True, timeout=60, check=False)
        return {line.split()[0]: line.split() for line in done.stdout.splitlines() if line}

    plain = listed()
    assert plain["NAME"][:3] == ["NAME", "PACKAGE", "TARGET"]
    assert plain["echo"][1:3] == ["flowhost-test-plugins", "0.0.1"]  # the package's
    checked = listed("--check")
    assert checked["NAME"][:3] == ["NAME", "VERSION", "PACKAGE"]
    assert checked["echo"][1:4] == ["1.2.0", "flowhost-test-plugins", "0.0.1"]  # its own
