"""A remote plugin whose server is down when the run starts does not block a run that can
recover: it is checked against the schemas it reported last time (kept in the state store),
or, when none are known and the step has another plugin, used unchecked with a warning
naming what could not be checked; at run time it is a transient failure that climbs the
ladder. With nothing to fall back on and nothing known, it stays an exit-2 error."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from plugin_servers import StartServer, flowhost

from flowhost.catalog import Catalog, RemoteDown
from flowhost.config import HostConfig
from flowhost.invokers import unreached
from flowhost.invokers.grpc.invoker import GrpcInvoker
from flowhost.problems import SpecError
from flowhost.static import check_text
from flowhost.store.schemas import StateDirSchemas
from flowhost_sdk import InvocationContext, TransientError


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write(tmp_path: Path, spec: str) -> None:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")


def down_with_fallback(url: str) -> str:
    return f"""
workflow_id: down
steps:
  - id: cache
    plugin: {url}
    inputs: {{text: hello}}
    retry: {{max_attempts: 2, initial_delay: 0}}
    fallback:
      - plugin: echo
    manual: false
  - id: after
    plugin: echo
    inputs: {{text: "${{cache.text}}!", data: {{n: $cache.length}}}}
"""


def test_a_down_primary_with_a_fallback_validates_with_a_warning(tmp_path: Path) -> None:
    url = f"grpc://127.0.0.1:{free_port()}/echo"
    write(tmp_path, down_with_fallback(url))
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout
    warning = done.stderr
    assert warning.startswith("warning: wf.yaml:5: step 'cache', field 'plugin': ")
    assert f"plugin '{url}' cannot be reached" in warning
    assert "no schemas it reported are known" in warning
    assert "the inputs step 'cache' give it" in warning
    assert "${cache.text}, $cache.length" in warning  # what other steps read of it
    assert "Traceback" not in warning


def test_the_run_climbs_the_ladder_past_the_down_server(tmp_path: Path) -> None:
    url = f"grpc://127.0.0.1:{free_port()}/echo"
    write(tmp_path, down_with_fallback(url))
    done = flowhost("run", "wf.yaml", "--no-progress", "--json-out", "result.json",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    cache = next(s for s in result["steps"] if s["id"] == "cache")
    assert (cache["status"], cache["used_plugin"], cache["attempts"]) == ("success", "echo", 3)
    failed = cache["failed_attempts"]
    assert [(a["attempt"], a["plugin"], a["error_kind"]) for a in failed] == [
        (1, url, "transient"), (2, url, "transient")]  # retried, as any transient error
    assert "UNAVAILABLE" in failed[0]["message"]
    assert "Start the plugin server" in (failed[0]["hint"] or "")
    assert result["outputs"]["after"]["text"] == "hello!"
    assert f"Used echo instead of {url}" in result["learnings"]["modifications"]


def test_a_down_fallback_does_not_block_a_reachable_primary(tmp_path: Path) -> None:
    url = f"grpc://127.0.0.1:{free_port()}/echo"
    write(tmp_path, f"""
workflow_id: down-fallback
steps:
  - id: say
    plugin: echo
    inputs: {{text: hi}}
    fallback:
      - plugin: {url}
""")
    done = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: wf.yaml:8: step 'say', field 'fallback.0.plugin'" in done.stderr


def test_down_with_nothing_to_fall_back_on_and_nothing_known_is_bad_input(
        tmp_path: Path) -> None:
    url = f"grpc://127.0.0.1:{free_port()}/echo"
    write(tmp_path, f"""
workflow_id: alone
steps:
  - id: only
    plugin: {url}
    inputs: {{text: hi}}
  - id: again
    plugin: {url}
    inputs: {{text: $only.text}}
""")
    for command in ("validate", "run"):
        done = flowhost(command, "wf.yaml", cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "wf.yaml:5: step 'only', field 'plugin'" in done.stderr
        assert "cannot reach" in done.stderr
        assert "a step with a fallback would run without it" in done.stderr
        assert "wf.yaml:8: step 'again', field 'plugin'" in done.stderr  # (see above)
        assert "Traceback" not in done.stderr


# -- with the store's memory of what servers reported ---------------------------------------

UPPER = """
workflow_id: remembered
steps:
  - id: first
    plugin: {url}
    inputs: {{text: hello}}
  - id: second
    plugin: echo
    inputs: {{text: $first.{field}}}
"""


def check(spec: str, memory: StateDirSchemas) -> tuple[Catalog, Any]:
    catalog = Catalog(HostConfig(), schemas=memory)
    _, plan = check_text(spec, "wf.yaml", [], catalog, {})
    return catalog, plan


def test_a_down_server_is_checked_against_what_it_reported_last(
        plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("echo")
    url = served.url("echo")
    memory = StateDirSchemas(tmp_path / "state", busy_timeout=5)
    catalog, _ = check(UPPER.format(url=url, field="text"), memory)  # reached: recorded
    assert not catalog.warnings
    served.stop()

    catalog, plan = check(UPPER.format(url=url, field="text"), memory)
    (warning,) = catalog.warnings
    assert warning.step == "first" and warning.field == "plugin" and warning.line == 5
    assert "cannot be reached" in warning.message
    assert "checked against the schemas it reported on" in warning.message
    assert "version 1.2.0" in warning.message
    assert plan.steps["first"].invoker.version == "1.2.0"
    assert plan.steps["first"].cache is False  # echo is not idempotent, as it reported
    with pytest.raises(SpecError) as bad:  # checked for real: a field echo has not
        check(UPPER.format(url=url, field="txt"), memory)
    (problem,) = bad.value.problems
    assert problem.step == "second"
    assert f"the outputs of {url} have no field 'txt'" in problem.message


async def call_until_it_answers(invoker: GrpcInvoker, ctx: InvocationContext
                                ) -> dict[str, Any]:
    """As the ladder would: gRPC waits out its reconnect backoff before it sees the server
    again, and fails the calls made meanwhile as transient."""
    for _ in range(200):
        try:
            return await invoker.invoke({"text": "hi"}, ctx)
        except TransientError:
            await asyncio.sleep(0.05)
    raise AssertionError("the server never answered")


def test_a_plugin_described_from_memory_asks_the_server_again_when_called(
        plugin_server: StartServer, tmp_path: Path) -> None:
    port = free_port()
    url = f"grpc://127.0.0.1:{port}/echo"
    memory = StateDirSchemas(tmp_path / "state", busy_timeout=5)
    with pytest.raises(RemoteDown) as down:
        Catalog(HostConfig(), schemas=memory).get(url)
    stand_in = down.value.stand_in
    assert isinstance(stand_in, GrpcInvoker) and stand_in.output_schema == {}
    ctx = InvocationContext(run_id="r", step_id="s", deadline=None)
    with pytest.raises(TransientError, match="UNAVAILABLE"):
        asyncio.run(stand_in.invoke({"text": "hi"}, ctx))
    assert unreached(stand_in) is not None

    plugin_server("echo", "--listen", f"127.0.0.1:{port}")  # back, on the same port
    outputs = asyncio.run(call_until_it_answers(stand_in, ctx))
    assert outputs["text"] == "hi"
    assert unreached(stand_in) is None  # described by the server itself now
    assert stand_in.version == "1.2.0" and "length" in stand_in.output_schema["properties"]
    recorded = memory.recorded_schemas(f"grpc://127.0.0.1:{port}", "echo")
    assert recorded is not None and recorded.descriptor.version == "1.2.0"


def test_flowhost_run_checks_a_down_server_against_an_earlier_run(
        plugin_server: StartServer, tmp_path: Path) -> None:
    served = plugin_server("echo")
    url = served.url("echo")
    write(tmp_path, UPPER.format(url=url, field="text"))
    first = flowhost("run", "wf.yaml", "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    served.stop()
    done = flowhost("validate", "wf.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked against the schemas it reported on" in done.stderr
    # It runs, and the unreachable server is a transient failure: retried, then the step
    # fails (no fallback) as a failure, exit 1, not as bad input.
    ran = flowhost("run", "wf.yaml", "--no-progress", "--on-manual", "fail",
                   "--json-out", "result.json", cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    first = next(s for s in result["steps"] if s["id"] == "first")
    assert first["status"] == "failed"
    assert {a["error_kind"] for a in first["failed_attempts"]} == {"transient"}


def test_validating_keeps_no_state_dir_of_its_own(plugin_server: StartServer,
                                                    tmp_path: Path) -> None:
    """Looking at a spec (validate, plan) reads what servers reported, but only a run
    creates the state dir that keeps it."""
    served = plugin_server("echo")
    write(tmp_path, UPPER.format(url=served.url("echo"), field="text"))
    for command in ("validate", "plan"):
        done = flowhost(command, "wf.yaml", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not (tmp_path / ".flowhost").exists()


def test_on_postgresql_what_a_server_reported_is_known_on_every_machine(
        plugin_server: StartServer, postgres_url: str, tmp_path: Path) -> None:
    """With ``--store postgresql://…`` the schemas go into the shared database, not a
    local state dir: a check on another machine (here: another directory, with no state
    dir) of a server that is down now uses what it reported to the first."""
    served = plugin_server("echo")
    first_host, second_host = tmp_path / "one", tmp_path / "two"
    for host in (first_host, second_host):
        host.mkdir()
        write(host, UPPER.format(url=served.url("echo"), field="text"))
    store = {"FLOWHOST_STORE": postgres_url}
    ran = flowhost("run", "wf.yaml", "--no-progress", cwd=first_host, env=store)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not (first_host / ".flowhost").exists()
    served.stop()
    done = flowhost("validate", "wf.yaml", cwd=second_host, env=store)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked against the schemas it reported on" in done.stderr
    assert not (second_host / ".flowhost").exists()
    alone = flowhost("validate", "wf.yaml", cwd=second_host)  # SQLite: nothing known here
    assert alone.returncode == 2 and "step 'first', field 'plugin'" in alone.stderr
