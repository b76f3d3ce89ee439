"""The real ``flowhost`` command with a remote plugin mapped to several servers in
flowhost.toml (``[remote] whoami = [...]``): the static checks ask whichever server
answers, the steps of a run spread over the servers, and with one of them gone the
workflow still checks and runs on the others."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from plugin_servers import Served, StartServer, flowhost

STEPS = 30


def write_files(tmp_path: Path, servers: list[Served]) -> None:
    urls = ", ".join(f'"grpc://{served.address}"' for served in servers)
    (tmp_path / "flowhost.toml").write_text(f"[remote]\nwhoami = [{urls}]\n", "utf-8")
    steps = "".join(f"  - {{id: w{n}, plugin: whoami, inputs: {{}}}}\n"
                    for n in range(STEPS))
    # The last step reads the first's output: the reference is checked against the
    # output schema the servers reported.
    (tmp_path / "wf.yaml").write_text(
        f"workflow_id: replicas\nsteps:\n{steps}"
        "  - {id: last, plugin: whoami, inputs: {seconds: 0}, needs: [w0]}\n"
        "  - id: check\n    plugin: echo\n"
        "    inputs: {text: \"pid ${w0.pid}\", data: {pid: $w0.pid}}\n", "utf-8")


def run_pids(tmp_path: Path) -> list[int]:
    """Run wf.yaml; the pid of the server that answered each whoami step."""
    result_file = tmp_path / "result.json"
    done = flowhost("run", "wf.yaml", "--no-progress", "--max-parallel", "4",
                    "--json-out", str(result_file), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(result_file.read_text("utf-8"))
    assert result["status"] == "success"
    outputs = result["outputs"]
    return [outputs[step]["pid"] for step in outputs if step != "check"]


def test_a_workflow_runs_on_every_server_of_a_list_and_on_the_others_when_one_is_gone(
        plugin_server: StartServer, tmp_path: Path) -> None:
    servers = [plugin_server("whoami") for _ in range(3)]
    write_files(tmp_path, servers)

    listed = flowhost("plugins", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "whoami")
    assert row["transport"] == "grpc"
    assert all(served.address in row["target"] for served in servers)

    checked = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    pids = run_pids(tmp_path)
    assert len(pids) == STEPS + 1 and set(pids) == {s.proc.pid for s in servers}

    # One server dies: checking asks one of the others, and every step runs on them.
    gone, rest = servers[0], servers[1:]
    gone.stop(signal.SIGKILL)
    checked = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    health = flowhost("plugins", "list", "--check", "--json", cwd=tmp_path)
    row = next(r for r in json.loads(health.stdout) if r["name"] == "whoami")
    assert row["ok"] and row["health"] == "SERVING", row  # (the test package has broken ones)
    pids = run_pids(tmp_path)
    assert set(pids) == {s.proc.pid for s in rest}
