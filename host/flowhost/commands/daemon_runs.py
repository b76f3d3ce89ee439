"""The daemon's clients: ``flowhost submit`` and ``flowhost runs list|show|watch|resolve|cancel``
with ``--server`` (or ``$FLOWHOST_SERVER``), over ``flowhost.v1.HostService``.

``submit`` prints the new run's id alone on stdout; with ``--wait`` it then shows the run as
``flowhost run`` does (the live view fed with the events of ``WatchRun``), reconnects by
itself from the last event it saw, asks on a terminal when a step waits for a person, and
exits with the run's exit code. Ctrl-C detaches, never cancels. A daemon that is not there
is one line saying where it was looked for and how to start one.

The commands and their parsers are here; what every one of them shares, the connection and
its flags, is in ``daemon_client``, and following a run's stream in ``daemon_watch``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flowhost.commands.daemon_client import (
    SERVER_ENV,
    Client,
    add_connection,
    guarded,
    run_result,
)
from flowhost.commands.daemon_watch import FINAL, follow, pending_in_daemon
from flowhost.files import MAX_SPEC_BYTES, read_bounded_text
from flowhost.problems import UserInputError


def add_commands(commands: argparse._SubParsersAction[Any],
                 run_commands: argparse._SubParsersAction[Any]) -> None:
    """``submit``, ``runs watch`` and ``runs cancel``."""
    submit = commands.add_parser("submit", help="submit a workflow to the flowhost daemon; "
                                 "prints the run id")
    submit.add_argument("file", metavar="FILE", help="workflow spec (YAML or JSON)")
    submit.add_argument("--set", metavar="ID.FIELD=VALUE", action="append", default=[],
                        dest="overrides", help="override one step input; repeatable")
    submit.add_argument("--wait", action="store_true",
                        help="follow the run until it ends; exit with its exit code")
    submit.add_argument("--request-id", metavar="ID", default=None,
                        help="idempotency key: submitting it again returns the same run")
    submit.add_argument("--no-progress", action="store_true",
                        help="with --wait: plain log lines instead of the live view")
    add_connection(submit, default_server=True)
    watch = run_commands.add_parser("watch", help="follow a daemon's run until it ends")
    watch.add_argument("run_id", metavar="RUN_ID")
    watch.add_argument("--no-progress", action="store_true",
                       help="plain log lines instead of the live view")
    watch.add_argument("--json", action="store_true", help="one event per line, as JSON")
    add_connection(watch, default_server=True)
    cancel = run_commands.add_parser("cancel", help="cancel a daemon's run for good")
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--reason", metavar="TEXT", default="",
                        help="why (recorded with the run)")
    add_connection(cancel, default_server=True)


def remote(args: argparse.Namespace) -> bool:
    """Whether a ``runs`` command goes to a daemon."""
    if args.runs_command in ("watch", "cancel"):
        return True
    return bool(getattr(args, "server", None) or os.environ.get(SERVER_ENV))


@guarded
def submit_command(args: argparse.Namespace, client: Client) -> int:
    from flowhost._proto import host_pb2 as pb

    path = Path(args.file)
    text = read_bounded_text(args.file, MAX_SPEC_BYTES, flag=None,
                             what="a spec the daemon takes")
    overrides: dict[str, str] = {}
    for given in args.overrides:
        target, sep, value = given.partition("=")
        if not sep or not target:
            raise UserInputError(f"--set {given!r}: write ID.FIELD=VALUE")
        overrides[target] = value
    request = pb.SubmitRunRequest(overrides=overrides, spec_name=args.file,
                                  request_id=args.request_id or f"cli-{uuid.uuid4().hex}")
    if path.suffix.lower() == ".json":
        request.spec_json = text
    else:
        request.spec_yaml = text
    answer = client.call("SubmitRun", request)
    print(answer.run_id, flush=True)
    if not args.wait:
        return 0
    return follow(client, answer.run_id, plain=args.no_progress, ask=_terminal())


def _terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@guarded
def watch_command(args: argparse.Namespace, client: Client) -> int:
    return follow(client, args.run_id, plain=args.no_progress, ask=_terminal() and not args.json,
                  as_json=args.json)


@guarded
def list_command(args: argparse.Namespace, client: Client) -> int:
    from flowhost._proto import host_pb2 as pb
    from flowhost.commands.messages import print_runs

    found: list[dict[str, Any]] = []
    token = ""
    while len(found) < args.limit:
        page = client.call("ListRuns", pb.ListRunsRequest(
            page_size=min(1000, args.limit - len(found)), page_token=token,
            status=args.status or "", workflow_id=args.workflow or ""))
        found += [{"run_id": r.run_id, "workflow_id": r.workflow_id, "status": r.status,
                   "started_at": r.started_at, "finished_at": r.finished_at or None,
                   "steps_total": r.steps_total, "steps_done": r.steps_done}
                  for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"No runs in the daemon at {client.address}.")
        return 0
    print_runs((r["run_id"], r["workflow_id"], r["status"],
                f"{r['steps_done']}/{r['steps_total']}", r["started_at"]) for r in found)
    return 0


@guarded
def show_command(args: argparse.Namespace, client: Client) -> int:
    found = run_result(client, args.run_id)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    steps = found["steps"]
    print(f"Run {found['run_id']}: {found['workflow_id']}")
    print(f"Status: {found['status']}, {found['steps_completed']} succeeded, "
          f"{found['steps_failed']} failed, {found['steps_skipped']} skipped of "
          f"{len(steps)} steps")
    print(f"Working directory: {found.get('workdir', '?')}")
    for step in steps:
        extras = [f"{step['duration_s']:.2f}s"] if step["status"] in ("success", "failed") \
            else []
        extras += ["cached"] if step["cached"] else []
        extras += ["rerun after interruption"] if step["rerun_after_interruption"] else []
        extras += [f"used {step['used_plugin']}"] if step["used_plugin"] != step["plugin"] \
            else []
        line = f"  {step['status']:<9} {step['id']} ({step['plugin']})"
        line += f"  {', '.join(extras)}" if extras else ""
        if step["error"]:
            line += f"\n            {step['error_type'] or 'Error'}: {step['error']}"
        elif step["reason"] and step["status"] != "success":
            line += f"\n            {step['reason']}"
        print(line)
    for decision in found.get("decisions", []):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(decision["at"]))
        comment = f": {decision['comment']}" if decision.get("comment") else ""
        print(f"  decision: {decision['action']} for step '{decision['step_id']}' by "
              f"{decision['by']} at {when}{comment}")
    if found["status"] == "waiting":
        print(pending_in_daemon(found["run_id"], found, client.flags))
    return 0


@guarded
def resolve_command(args: argparse.Namespace, client: Client) -> int:
    from flowhost._proto import host_pb2 as pb
    from flowhost.commands.runs import outputs_flag

    outputs = args.outputs.encode("utf-8") if outputs_flag(args) is not None else b""
    answer = client.call("ResolveIntervention", pb.ResolveInterventionRequest(
        run_id=args.run_id, step_id=args.step, action=args.action, outputs_json=outputs,
        comment=args.comment or ""))
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(answer.resolved_at))
    print(f"Recorded: {args.action} for step '{args.step}' of run {args.run_id}, by "
          f"{answer.resolved_by} at {when}. The daemon goes on with the run once no "
          f"question is left (flowhost runs watch {args.run_id}{client.flags}).")
    return 0


@guarded
def cancel_command(args: argparse.Namespace, client: Client) -> int:
    from flowhost._proto import host_pb2 as pb

    answer = client.call("CancelRun", pb.CancelRunRequest(run_id=args.run_id,
                                                          reason=args.reason))
    if answer.status == "cancelled":
        print(f"Run {args.run_id} is cancelled.")
        return 0
    print(f"Run {args.run_id} is {answer.status}: it could not be cancelled"
          + (" (it had finished)" if answer.status in FINAL else
             " yet; `flowhost runs show` tells when it is"))
    return 0 if answer.status in FINAL else 1
