"""Following a daemon's run to its end, for ``submit --wait`` and ``runs watch``.

The run goes on in the daemon whatever happens here, so this side only shows it: the events
of ``WatchRun`` feed the same live view ``flowhost run`` has; a lost connection is picked up
again from the last event seen, for a while; a step that waits for a person is asked on a
terminal, or else printed with the commands that answer it. The exit code is the run's.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any

from flowhost.commands.daemon_client import Client, ClientError, run_result, short_reason

EXIT_CODES = {"success": 0, "failed": 1, "aborted": 1, "cancelled": 1, "waiting": 3,
              "interrupted": 130}
FINAL = ("success", "failed", "aborted", "cancelled")
RECONNECT_FOR_S = 120.0


def follow(client: Client, run_id: str, *, plain: bool, ask: bool,
           as_json: bool = False) -> int:
    """Show the run until it ends; its exit code (3: it waits for a person and no one here
    answers; 130: detached with Ctrl-C)."""
    from flowhost.progress import make_progress

    progress = None if as_json else make_progress(enabled=not plain, stream=sys.stdout,
                                                   term=os.environ.get("TERM"))
    watcher = _Watcher(client, run_id, progress, ask, as_json)
    try:
        return watcher.run()
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
            progress = None
        print(f"\nDetached: run {run_id} goes on in the daemon. Watch it again with: "
              f"flowhost runs watch {run_id}{client.flags}", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()


class _Watcher:
    def __init__(self, client: Client, run_id: str, progress: Any, ask: bool,
                 as_json: bool) -> None:
        self.client, self.run_id, self.progress = client, run_id, progress
        self.ask, self.as_json = ask, as_json
        self.cursor = 0
        self.events: list[Any] = []

    def run(self) -> int:
        import grpc

        lost: float | None = None
        pause = 0.2
        while True:
            try:
                for message in self.client.stream(self.run_id, self.cursor):
                    lost, pause = None, 0.2
                    status = self.take(message)
                    if status is not None:
                        return status
            except grpc.RpcError as exc:
                code = exc.code()
                if code != grpc.StatusCode.UNAVAILABLE or not self.client.connected:
                    raise self.client.failure(exc) from None
                if lost is None:
                    lost = time.monotonic()
                    print(f"flowhost: lost the daemon at {self.client.address} "
                          f"({short_reason(exc.details() or '')}); reconnecting from event "
                          f"{self.cursor}", file=sys.stderr, flush=True)
                elif time.monotonic() - lost > RECONNECT_FOR_S:
                    again = f"flowhost runs watch {self.run_id}{self.client.flags}"
                    raise ClientError(f"the daemon at {self.client.address} did not come back "
                                      f"in {RECONNECT_FOR_S:g}s. Watch the run again with: "
                                      f"{again}") from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            # ended without the run's end (it should not): look, and go on watching
            found = run_result(self.client, self.run_id)
            if found["status"] in FINAL:
                return EXIT_CODES[found["status"]]

    def take(self, message: Any) -> int | None:
        """Show one event; an exit code once the run ended (or waits for no one here)."""
        from flowhost.events import RunFinished
        from flowhost.store import codec

        if message.seq <= self.cursor:
            return None
        self.cursor = message.seq
        if self.as_json:
            print(message.event_json.decode("utf-8"), flush=True)
        event = codec.decode(message.run_id, message.type, message.step_id or None,
                             message.event_json.decode("utf-8"), message.seq)
        if event is None:
            return None
        self.events.append(event)
        if self.progress is not None:
            self.progress(event)
        if not isinstance(event, RunFinished):
            return None
        if event.status in FINAL:
            return EXIT_CODES[event.status]
        if event.status != "waiting":
            return None
        found = run_result(self.client, self.run_id)
        if found["status"] != "waiting":
            return None  # answered since: the events that follow show it
        if self.ask:
            self.answer_questions()
            return None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        print(pending_in_daemon(self.run_id, found, self.client.flags))
        return EXIT_CODES["waiting"]

    def answer_questions(self) -> None:
        import asyncio

        from flowhost._proto import host_pb2 as pb
        from flowhost.intervene import TerminalIntervener
        from flowhost.store import read

        point = read(self.events)
        hold = self.progress.hold if self.progress is not None else (lambda: None)
        release = self.progress.release if self.progress is not None else (lambda: None)
        for step_id in point.waiting:
            while True:
                request = _request(step_id, point, self.events)
                resolution = asyncio.run(TerminalIntervener(hold=hold, release=release)
                                         .resolve(request))
                outputs = (json.dumps(resolution.outputs).encode("utf-8")
                           if resolution.outputs is not None else b"")
                try:
                    answer = self.client.call("ResolveIntervention", pb.ResolveInterventionRequest(
                        run_id=self.run_id, step_id=step_id, action=resolution.action,
                        outputs_json=outputs))
                except ClientError as exc:
                    print(f"flowhost: {exc}", file=sys.stderr)
                    if exc.status == "INVALID_ARGUMENT":
                        continue  # outputs that do not fit: ask again
                    break  # answered by someone else, or no longer waiting
                print(f"Recorded: {resolution.action} for step '{step_id}' (by "
                      f"{answer.resolved_by}).", flush=True)
                break


def _request(step_id: str, point: Any, events: list[Any]) -> Any:
    from flowhost.events import AttemptFailed
    from flowhost.intervene import AttemptSummary, InterventionRequest

    asked = point.waiting[step_id]
    tried = tuple(AttemptSummary(e.plugin, e.attempt, e.error_type, e.message, e.duration_s)
                  for e in events if isinstance(e, AttemptFailed) and e.step_id == step_id)
    index = next((n for n, (sid, _, _) in enumerate(point.steps, 1) if sid == step_id), "?")
    return InterventionRequest(step_id=step_id, label=f"{index}/{len(point.steps)}",
                               plugin=asked.plugin, error=asked.error,
                               error_type=asked.error_type, hint=asked.hint, attempts=tried)


def pending_in_daemon(run_id: str, result: dict[str, Any], flags: str) -> str:
    lines = []
    for step in result["steps"]:
        if step["status"] != "waiting":
            continue
        asked = step["interventions"][-1] if step["interventions"] else {}
        lines += [f"⏸  Run {run_id} is waiting for a decision on step '{step['id']}' "
                  f"({step['used_plugin']}):", f"   {asked.get('error', '')}"]
        if asked.get("hint"):
            lines.append(f"   Hint: {asked['hint']}")
        base = f"flowhost runs resolve {run_id} {shlex.quote(step['id'])}{flags}"
        lines += ["   Answer with one of:", f"     {base} --action retry",
                  f"     {base} --action skip [--outputs JSON] [--comment TEXT]",
                  f"     {base} --action abort"]
    lines.append("   The daemon goes on with the run once it is answered.")
    return "\n".join(lines)
