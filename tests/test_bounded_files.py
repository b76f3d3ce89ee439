"""The files a flag names (token files, certificates, a spec to submit) are read with a bound:
``/dev/zero`` is exit 2 naming the flag, in a process that could not fill the memory anyway
(/tmp/flowhost-bugs.md 1). Nothing listens on 127.0.0.1:1: the file is refused first."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

MEMORY_LIMIT = 2 * 1024**3  # bytes of address space: reading /dev/zero without end fails
QUICK = "workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
NOWHERE = ["--server", "127.0.0.1:1"]


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def flowhost(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "FLOWHOST_SERVER"}
    return subprocess.run([sys.executable, "-m", "flowhost", *args], capture_output=True,
                          text=True, timeout=120, check=False, preexec_fn=_limited, cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("args", "said"), [
    (["submit", "quick.yaml", *NOWHERE, "--token-file", "/dev/zero"],
     "--token-file /dev/zero: larger than 65,536 bytes: not a token file"),
    (["submit", "quick.yaml", *NOWHERE, "--token-file", "/dev/full"],
     "--token-file /dev/full: larger than 65,536 bytes"),
    (["runs", "list", *NOWHERE, "--tls-ca", "/dev/zero"],
     "--tls-ca /dev/zero: larger than 1,048,576 bytes: not a PEM file"),
    (["runs", "list", *NOWHERE, "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"],
     "/dev/zero: larger than 1,048,576 bytes"),
    (["submit", "/dev/zero", *NOWHERE],
     "/dev/zero: larger than 2,097,152 bytes: not a spec the daemon takes"),
    (["serve", "--state-dir", "state", "--token-file", "/dev/zero"],
     "--token-file /dev/zero: larger than 65,536 bytes"),
    (["serve", "--state-dir", "state", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"],
     "--tls-cert /dev/zero: larger than 1,048,576 bytes: not a PEM file"),
])
def test_a_file_that_never_ends_is_refused_naming_the_flag(tmp_path: Path, args: list[str],
                                                           said: str) -> None:
    (tmp_path / "quick.yaml").write_text(QUICK, encoding="utf-8")
    done = flowhost(tmp_path, *args)
    assert done.returncode == 2, done
    assert said in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr) < 1000
    assert not (tmp_path / "state").exists()  # refused before the daemon starts


def test_a_spec_to_submit_that_cannot_be_read_is_named_once_and_shortened(
        tmp_path: Path) -> None:
    done = flowhost(tmp_path, "submit", "b/" * 2100, *NOWHERE)
    assert done.returncode == 2, done
    assert "(4,200 characters): cannot read it (File name too long)" in done.stderr
    assert len(done.stderr) < 300


def test_a_token_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_bytes(b"caf\xe9\n")
    done = flowhost(tmp_path, "runs", "list", *NOWHERE, "--token-file", "tokens")
    assert done.returncode == 2, done
    assert "--token-file tokens: cannot read it (not UTF-8 text" in done.stderr


@pytest.mark.parametrize("flag", ["--tls-ca", "--tls-cert"])
def test_a_certificate_that_is_not_pem_is_refused_naming_the_flag(tmp_path: Path,
                                                                  flag: str) -> None:
    """As found: grpc's C core logged "Could not load any root certificate" (4 lines) and
    the client then said the connection was refused (bugs 7)."""
    (tmp_path / "quick.yaml").write_text(QUICK, encoding="utf-8")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    pair = ["--tls-key", "key.pem"] if flag == "--tls-cert" else []
    done = flowhost(tmp_path, "runs", "list", *NOWHERE, flag, "quick.yaml", *pair)
    assert done.returncode == 2, done
    assert done.stderr == f"flowhost: {flag} quick.yaml: not a PEM file (-----BEGIN ... -----)\n"


def test_flowhost_plugin_serve_refuses_a_certificate_that_never_ends(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "flowhost_sdk", "serve", "echo", "--listen",
                           "127.0.0.1:0", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"],
                          capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=_limited, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done
    assert done.stderr.strip() == ("flowhost-plugin: --tls-cert /dev/zero: larger than "
                                   "1,048,576 bytes: not a certificate or key")
