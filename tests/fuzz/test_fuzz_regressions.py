"""What the fuzz tests found, kept as plain tests: each the failing example as it was found,
and its neighbours."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from fuzzing import Ending, assert_ends_well, run_cli, workdir

from flowhost.daemon import server

QUICK = "workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"


@pytest.mark.parametrize("argv", [
    ["plan", "quick.yaml", "--set=--"],  # as found: "internal error: AttributeError"
    ["validate", "quick.yaml", "--set=--"],
    ["runs", "list", "--limit=--"],
    ["runs", "resolve", "r", "a", "--action=--"],
])
def test_a_flag_given_as_flag_equals_dashdash_is_the_text_dashdash(argv: list[str]) -> None:
    """Python 3.11's argparse made the value of ``--flag=--`` an empty list."""
    with workdir() as where:
        (where / "quick.yaml").write_text(QUICK, encoding="utf-8")
        ending = run_cli(argv)
    assert_ends_well(ending, names=("'--'",))
    assert ending.code == 2 and "'--'" in ending.err


def test_a_json_out_named_dashdash_is_written() -> None:
    with workdir() as where:
        (where / "quick.yaml").write_text(QUICK, encoding="utf-8")
        ending = run_cli(["run", "quick.yaml", "--no-progress", "--json-out=--"])
        assert ending.code == 0, ending
        assert Path(where / "--").read_text(encoding="utf-8").startswith("{")


LONG_PATH = "b/" * 2100  # past PATH_MAX: "File name too long"


def test_a_spec_path_too_long_is_named_once_and_shortened() -> None:
    """As found: the message held the 4,200-character path twice (8,500 characters)."""
    with workdir():
        ending = run_cli(["validate", LONG_PATH])
    assert_ends_well(ending, names=("(4,200 characters): cannot read the file: File name "
                                    "too long",))
    assert len(ending.err) < 300



MEMORY_LIMIT = 2 * 1024**3  # bytes of address space: a command that reads without end fails


def bounded_flowhost(*args: str, env: dict[str, str] | None = None
                     ) -> subprocess.CompletedProcess[str]:
    """The real ``flowhost`` in a process that cannot take the machine's memory."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "flowhost", *args], capture_output=True,
                          text=True, timeout=120, check=False, preexec_fn=limit,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/full"])
def test_a_spec_that_never_ends_is_refused(device: str) -> None:
    """As found: reading the spec filled the memory (the OOM killer stopped the tests)."""
    done = bounded_flowhost("validate", device)
    assert_ends_well(Ending(done.returncode, done.stdout, done.stderr), codes=(2,),
                     names=(f"{device}: larger than 16,777,216 characters",))


def test_a_config_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    (tmp_path / "quick.yaml").write_text(QUICK, encoding="utf-8")
    done = bounded_flowhost("validate", str(tmp_path / "quick.yaml"),
                            env={"FLOWHOST_CONFIG": "/dev/zero"})
    assert_ends_well(Ending(done.returncode, done.stdout, done.stderr), codes=(2,),
                     names=("/dev/zero: larger than 1,048,576 characters",))

# Found, reported to the owners of the code (not fixed here): xfail until they are.
def test_serve_with_a_certificate_path_too_long_is_exit_2() -> None:
    with workdir(), mock.patch.object(server, "serve", lambda config: (config.checked(), 0)[1]):
        ending = run_cli(["serve", "--tls-cert", LONG_PATH, "--tls-key", LONG_PATH])
    assert_ends_well(ending, codes=(2,))


@pytest.mark.parametrize("flag", ["--token-file", "--tls-ca"])
def test_a_client_credential_path_too_long_is_shortened(flag: str) -> None:
    with workdir():
        ending = run_cli(["runs", "list", "--server", "127.0.0.1:1", flag, LONG_PATH])
    assert_ends_well(ending, codes=(2,))
    assert len(ending.err) < 1000
