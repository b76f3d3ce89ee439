"""The .proto and its README are enough: a plugin server built without flowhost_sdk, from code
generated at test time out of protos/flowhost/v1/plugin.proto alone, runs in a real
``flowhost run`` like any other plugin: type-checked, retried, fallen back from."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_servers import HERE, flowhost

REPO = HERE.parent.parent
PROTO = REPO / "protos" / "flowhost" / "v1" / "plugin.proto"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Python code generated from the .proto alone, as another language's toolchain would."""
    root = tmp_path_factory.mktemp("raw-proto")
    source, out = root / "src", root / "out"
    source.mkdir()
    out.mkdir()
    shutil.copy(PROTO, source / "plugin.proto")  # its own layout: no clash with `flowhost`
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{source}",
                           f"--python_out={out}", f"--grpc_python_out={out}", "plugin.proto"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def raw_server(generated: Path, tmp_path: Path) -> Iterator[str]:
    """Start raw_plugin_server.py; yields its HOST:PORT; always stopped."""
    log = tmp_path / "raw-server.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(HERE / "raw_plugin_server.py"),
                                 str(generated)], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("raw-plugin-server: serving on "), log.read_text()
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def run(tmp_path: Path, spec: str, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                         dict[str, object]]:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    done = flowhost("run", "wf.yaml", "--no-progress", "--on-manual", "fail",
                    "--json-out", "result.json", *args, cwd=tmp_path)
    result_file = tmp_path / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return done, result


def test_a_raw_remote_plugin_runs_in_a_real_workflow(raw_server: str, tmp_path: Path) -> None:
    spec = f"""
workflow_id: any-language
steps:
  - id: shout
    plugin: grpc://{raw_server}/upper
    inputs: {{text: "hello from any language"}}
    timeout: 10
  - id: local
    plugin: echo
    inputs: {{text: "${{shout.text}} (${{shout.length}} chars)"}}
  - id: db
    plugin: grpc://{raw_server}/flaky-db
    retry: {{max_attempts: 2, initial_delay: 0.01}}
    fallback:
      - plugin: echo
        inputs: {{text: "no database"}}
"""
    done, result = run(tmp_path, spec)
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["status"] == "success"
    outputs = result["outputs"]
    assert isinstance(outputs, dict)
    assert outputs["shout"] == {"text": "HELLO FROM ANY LANGUAGE", "length": 23}
    assert outputs["local"]["text"] == "HELLO FROM ANY LANGUAGE (23 chars)"
    db = next(s for s in result["steps"] if s["id"] == "db")  # type: ignore[attr-defined]
    assert db["used_plugin"] == "echo" and db["attempts"] == 3
    # The raw server's transient error and hint reached the user, then the fallback ran.
    assert "database connection refused" in done.stdout
    assert "Start the database: pg_ctl start" in done.stdout


def test_references_to_a_raw_plugin_are_type_checked(raw_server: str, tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: any-language-types
steps:
  - id: shout
    plugin: grpc://{raw_server}/upper
    inputs: {{text: 5, loud: true}}
  - id: local
    plugin: echo
    inputs: {{text: $shout.lenght}}
""", encoding="utf-8")
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "value 5 is rejected: 5 is not of type 'string'" in done.stderr
    assert f"grpc://{raw_server}/upper has no input 'loud'" in done.stderr
    assert "have no field 'lenght'" in done.stderr and "did you mean 'length'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_outputs_a_raw_plugin_declares_but_breaks_fail_the_step_naming_the_field(
        raw_server: str, tmp_path: Path) -> None:
    spec = f"""
workflow_id: any-language-liar
steps:
  - id: lie
    plugin: grpc://{raw_server}/liar
    manual: false
"""
    done, result = run(tmp_path, spec)
    assert done.returncode == 1
    assert result["status"] == "failed"
    assert "field 'count': 'many' is not of type 'integer'" in done.stdout
