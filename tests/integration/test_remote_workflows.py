"""Real ``flowhost`` runs against real ``flowhost-plugin`` servers: remote steps behave like
local ones (references, retries, fallbacks, results), named by URL or in flowhost.toml."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from certs import Certs
from plugin_servers import Served, StartServer, flowhost


def run(tmp_path: Path, spec: str, *args: str, env: dict[str, str] | None = None
        ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    result_file = tmp_path / "result.json"
    result_file.unlink(missing_ok=True)
    done = flowhost("run", "wf.yaml", "--no-progress", "--on-manual", "fail",
                    "--json-out", str(result_file), *args, cwd=tmp_path, env=env)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return done, result


def step(result: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in result["steps"] if s["id"] == step_id)
    return found


def test_remote_and_local_steps_pass_outputs_to_each_other(plugin_server: StartServer,
                                                           tmp_path: Path) -> None:
    served = plugin_server("noop", "echo", "sync-echo")
    done, result = run(tmp_path, f"""
workflow_id: mixed
steps:
  - id: count
    plugin: {served.url("noop")}
    inputs: {{value: 41}}
  - id: say
    plugin: {served.url("echo")}
    inputs: {{text: "n=${{count.value}}", tags: [a, b]}}
    timeout: 5
  - id: local
    plugin: echo
    inputs: {{text: $say.text, data: {{remote_length: $say.length}}}}
  - id: threaded
    plugin: {served.url("sync-echo")}
    inputs: {{text: $local.text}}
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("run_id: ")
    assert result["status"] == "success"
    assert result["outputs"]["count"] == {"value": 42}
    assert result["outputs"]["say"] == {"text": "n=42", "length": 4, "data": {},
                                        "tags": ["a", "b"]}
    assert result["outputs"]["local"]["data"] == {"remote_length": 4}
    assert result["outputs"]["threaded"]["thread"].startswith("flowhost-plugin")
    for entry in result["steps"]:
        assert entry["used_plugin"] == entry["plugin"]  # nothing was substituted
    assert result["learnings"]["modifications"] == []


def test_names_mapped_in_flowhost_toml(plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("echo", "remote_plugins:Deadline")
    (tmp_path / "flowhost.toml").write_text(f"""
[remote]
shout = "grpc://{served.address}/echo"
deadline = "grpc://{served.address}"
""", encoding="utf-8")
    done, result = run(tmp_path, """
workflow_id: mapped
steps:
  - id: hello
    plugin: shout
    inputs: {text: hello}
  - plugin: deadline
    timeout: 7
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["outputs"]["hello"]["length"] == 5
    timing = result["outputs"]["deadline"]
    assert 5 < timing["remaining"] <= 7.1  # the step's timeout is the call's deadline
    assert (timing["step_id"], timing["run_id"]) == ("deadline", result["run_id"])

    listed = flowhost("plugins", "list", "--json", cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["shout"]["transport"] == "grpc"
    assert rows["shout"]["target"] == f"grpc://{served.address}/echo"
    assert rows["shout"]["health"] is None  # metadata only: nothing was called
    assert rows["echo"]["transport"] == "local"

    checked = flowhost("plugins", "list", "--check", cwd=tmp_path)
    line = next(x for x in checked.stdout.splitlines() if x.startswith("shout "))
    assert "(remote)" in line and "ok (SERVING)" in line and "1.2.0" in line

    described = flowhost("plugins", "describe", "deadline", "--json", cwd=tmp_path)
    data = json.loads(described.stdout)
    assert data["transport"] == "grpc"
    assert data["target"] == f"grpc://{served.address}/deadline"
    assert data["version"] == "2.0.0"
    assert "remaining" in data["output_schema"]["properties"]


def test_flowhost_config_points_at_the_file(plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("echo")
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'[remote]\nfar = "grpc://{served.address}/echo"\n', encoding="utf-8")
    done, result = run(tmp_path, "workflow_id: env\nsteps:\n  - {plugin: far, inputs: {text: x}}\n",
                       env={"FLOWHOST_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert result["outputs"]["far"]["text"] == "x"


def test_a_bad_flowhost_toml_is_exit_2_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "flowhost.toml").write_text('[remote]\nx = "http://nope:1"\n', encoding="utf-8")
    (tmp_path / "wf.yaml").write_text("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: "
                                      "{text: x}}\n", encoding="utf-8")
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "flowhost.toml: [remote] x: 'http://nope:1' is not a grpc:// or grpcs:// URL" in (
        done.stderr)
    assert "Traceback" not in done.stderr


def test_validate_checks_remote_plugins_and_names_an_unreachable_target(
        plugin_server: StartServer, tmp_path: Path, unused_tcp_port: int) -> None:
    served = plugin_server("noop")
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: checks
steps:
  - id: first
    plugin: {served.url("noop")}
    inputs: {{value: "many"}}
  - id: gone
    plugin: grpc://127.0.0.1:{unused_tcp_port}/noop
    inputs: {{value: $first.valu}}
""", encoding="utf-8")
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "value 'many' is rejected" in done.stderr
    assert "have no field 'valu'" in done.stderr
    assert f"cannot reach grpc://127.0.0.1:{unused_tcp_port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_remote_that_dies_mid_call_is_retried_by_the_ladder(plugin_server: StartServer,
                                                              tmp_path: Path) -> None:
    served = plugin_server("remote_plugins:DieOnce")
    restarted: list[Served] = []

    def restart_when_dead() -> None:  # a supervisor bringing the server back on its port
        served.proc.wait(60)
        restarted.append(plugin_server("remote_plugins:DieOnce", "--listen", served.address))

    supervisor = threading.Thread(target=restart_when_dead, daemon=True)
    supervisor.start()
    marker = tmp_path / "died-once"
    done, result = run(tmp_path, f"""
workflow_id: die
steps:
  - id: fragile
    plugin: {served.url("die-once")}
    inputs: {{marker: "{marker}"}}
    retry: {{max_attempts: 6, initial_delay: 1, multiplier: 1.5, jitter: false}}
    timeout: 20
""")
    supervisor.join(30)
    assert marker.exists() and served.proc.returncode == 17
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["outputs"]["fragile"] == {"survived": True}
    assert step(result, "fragile")["attempts"] >= 2
    assert "attempt 1 failed: TransientError: remote plugin" in done.stdout
    assert restarted


def test_fallbacks_between_local_and_remote_plugins(plugin_server: StartServer,
                                                    tmp_path: Path) -> None:
    served = plugin_server("echo", "remote_plugins:Hinted")
    done, result = run(tmp_path, f"""
workflow_id: fallbacks
steps:
  - id: warm
    plugin: {served.url("hinted")}
    retry: {{max_attempts: 2, initial_delay: 0.01}}
    fallback:
      - plugin: echo
        inputs: {{text: cold}}
  - id: broken
    plugin: fail
    inputs: {{kind: permanent}}
    fallback:
      - plugin: {served.url("echo")}
        inputs: {{text: rescued}}
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["outputs"]["warm"]["text"] == "cold"
    assert result["outputs"]["broken"]["text"] == "rescued"
    assert step(result, "warm")["used_plugin"] == "echo"
    assert step(result, "broken")["used_plugin"] == served.url("echo")
    assert "Wait — or start Rédis" in done.stdout  # the remote hint reached the user
    assert "retrying" in done.stdout and "250ms" in done.stdout  # its retry_after was kept
    assert any(served.url("echo") in m for m in result["learnings"]["modifications"])


def test_grpcs_with_mutual_tls_from_flowhost_toml(plugin_server: StartServer, certs: Certs,
                                                  tmp_path: Path) -> None:
    served = plugin_server("echo", "--tls-cert", str(certs.server_cert), "--tls-key",
                           str(certs.server_key), "--tls-client-ca", str(certs.ca))
    spec = "workflow_id: tls\nsteps:\n  - {plugin: secure, inputs: {text: sealed}}\n"
    (tmp_path / "flowhost.toml").write_text(f"""
[remote]
secure = "grpcs://{served.address}/echo"

[tls."{served.address}"]
ca = "{certs.ca}"
cert = "{certs.client_cert}"
key = "{certs.client_key}"
""", encoding="utf-8")
    done, result = run(tmp_path, spec)
    assert done.returncode == 0, done.stdout + done.stderr
    assert result["outputs"]["secure"]["text"] == "sealed"

    # Without the client certificate the server refuses: an error naming the target.
    (tmp_path / "flowhost.toml").write_text(f"""
[remote]
secure = "grpcs://{served.address}/echo"

[tls."{served.address}"]
ca = "{certs.ca}"
""", encoding="utf-8")
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "plugin 'secure': " in done.stderr and served.address in done.stderr
    assert served.proc.poll() is None
