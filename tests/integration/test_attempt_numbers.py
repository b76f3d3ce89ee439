"""Attempts numbered one way (CONTRACT §2, §3): ``ctx.attempt`` (InvokeRequest field 5)
counts every attempt of the step across the primary, its fallbacks and a person's retries,
as the result and the progress lines show; ``ctx.plugin_attempt`` (field 6) restarts with
each plugin's own retry budget."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
from plugin_servers import StartServer
from plugin_servers import flowhost as flowhost_cli

import flowhost
from flowhost.events import AttemptStarted, InterventionRequested
from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb


def test_attempts_count_across_the_primary_and_its_fallback(plugin_server: StartServer,
                                                             tmp_path: Path) -> None:
    served = plugin_server("stream_plugins:Down", "stream_plugins:Attempts")
    (tmp_path / "wf.yaml").write_text(f"""
workflow_id: numbered
steps:
  - id: work
    plugin: {served.url("down")}
    retry: {{max_attempts: 2, initial_delay: 0}}
    fallback:
      - plugin: {served.url("attempts")}
        inputs: {{succeed_at: 2}}
    manual: false
""", encoding="utf-8")
    done = flowhost_cli("run", "wf.yaml", "--no-progress", "--json-out", "result.json",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    # down: step attempts 1 and 2 (its own 1 and 2); attempts: 3 (its 1) failed, 4 (its 2)
    assert result["outputs"]["work"] == {"attempt": 4, "plugin_attempt": 2}
    (step,) = result["steps"]
    assert step["attempts"] == 4
    failed = [(a["attempt"], a["message"]) for a in step["failed_attempts"]]
    assert failed == [(1, "down (attempt 1, plugin attempt 1)"),
                      (2, "down (attempt 2, plugin attempt 2)"),
                      (3, "not yet (attempt 3, plugin attempt 1)")]
    assert "attempt 4 started with" in done.stdout  # the progress line's number


async def test_a_persons_retry_goes_on_counting(plugin_server: StartServer,
                                                tmp_path: Path) -> None:
    served = plugin_server("stream_plugins:Attempts")
    run = await flowhost.start_run(f"""
workflow_id: retried
steps:
  - id: work
    plugin: {served.url("attempts")}
    inputs: {{step_attempt: 3}}
    retry: {{max_attempts: 2, initial_delay: 0}}
    manual: {{hint: try again}}
""", spec_name="w.yaml", workdir=tmp_path, env={}, on_manual="ask")
    started: list[int] = []
    async for event in run.events():
        if isinstance(event, AttemptStarted):
            started.append(event.attempt)
        if isinstance(event, InterventionRequested):
            assert event.attempts == 2
            await run.resolve("work", "retry")
    result = await run.result()
    assert result.status == "success"
    assert result.outputs["work"] == {"attempt": 3, "plugin_attempt": 1}  # a fresh budget
    assert started == [1, 2, 3]
    assert result.steps[0].attempts == 3


def test_a_host_that_sends_no_plugin_attempt_gets_the_attempt(plugin_server: StartServer
                                                              ) -> None:
    """An older host sends field 5 only: the SDK's server gives the plugin that number for
    both."""
    served = plugin_server("stream_plugins:Attempts")
    with grpc.insecure_channel(served.address) as channel:
        invoke = channel.unary_unary(protocol.INVOKE,
                                     request_serializer=pb.InvokeRequest.SerializeToString,
                                     response_deserializer=pb.InvokeResponse.FromString)
        response = invoke(pb.InvokeRequest(plugin="attempts", inputs_json=b"{}", attempt=3),
                          timeout=60)
    assert json.loads(response.outputs_json) == {"attempt": 3, "plugin_attempt": 3}
