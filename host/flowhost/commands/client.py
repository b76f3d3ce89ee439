"""The daemon's clients: ``flowhost submit`` and ``flowhost runs list|show|watch|resolve|cancel``
with ``--server`` (or ``$FLOWHOST_SERVER``), over ``flowhost.v1.HostService``.

``submit`` prints the new run's id alone on stdout; with ``--wait`` it then shows the run as
``flowhost run`` does (the live view fed with the events of ``WatchRun``), reconnects by
itself from the last event it saw, asks on a terminal when a step waits for a person, and
exits with the run's exit code. Ctrl-C detaches, never cancels. A daemon that is not there
is one line saying where it was looked for and how to start one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flowhost.files import MAX_PEM_BYTES, MAX_SPEC_BYTES, read_bounded, read_bounded_text
from flowhost.problems import UserInputError, shorten

if TYPE_CHECKING:
    import grpc

SERVER_ENV = "FLOWHOST_SERVER"
DEFAULT_SERVER = "127.0.0.1:50051"
EXIT_CODES = {"success": 0, "failed": 1, "aborted": 1, "cancelled": 1, "waiting": 3,
              "interrupted": 130}
FINAL = ("success", "failed", "aborted", "cancelled")
RECONNECT_FOR_S = 120.0
T = TypeVar("T")


class ClientError(Exception):
    """What the daemon answered, for the user (``code``: the exit code)."""

    def __init__(self, message: str, code: int = 1, status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the gRPC status code's name


# -- flags --------------------------------------------------------------------------------

def add_connection(parser: argparse.ArgumentParser, *, default_server: bool) -> None:
    """``--server`` and how to reach it: a token, TLS, a client certificate."""
    where = (f"$FLOWHOST_SERVER or {DEFAULT_SERVER}" if default_server
             else "$FLOWHOST_SERVER; without either, the local state dir")
    parser.add_argument("--server", metavar="H:P", default=None,
                        help=f"the flowhost daemon to ask (default {where})")
    parser.add_argument("--token-file", metavar="F", default=None,
                        help="send the token in F (the daemon's --token-file)")
    parser.add_argument("--tls-ca", metavar="F", default=None,
                        help="TLS: trust the daemon's certificate if this CA signed it")
    parser.add_argument("--tls-cert", metavar="F", default=None,
                        help="mutual TLS: this client's certificate (with --tls-key)")
    parser.add_argument("--tls-key", metavar="F", default=None, help="its private key")


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


# -- the connection ---------------------------------------------------------------------

def _read(path: str, flag: str) -> bytes:
    data = read_bounded(path, MAX_PEM_BYTES, flag=flag, what="a PEM file")
    if b"-----BEGIN " not in data:  # else grpc's C core logs to stderr, and fails later
        raise UserInputError(f"{flag} {shorten(path)}: not a PEM file (-----BEGIN ... -----)")
    return data


@dataclass
class Client:
    address: str
    stub: Any
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    flags: str  # the connection flags, for the commands we print
    connected: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Client:
        import grpc

        from flowhost._proto import host_pb2_grpc
        from flowhost.daemon.auth import read_client_token

        address = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UserInputError(f"--server {address!r}: not HOST:PORT (e.g. {DEFAULT_SERVER})")
        if (args.tls_cert is None) != (args.tls_key is None):
            raise UserInputError("--tls-cert and --tls-key go together (this client's "
                                 "certificate and its private key)")
        metadata: tuple[tuple[str, str], ...] = ()
        if args.token_file:
            token = read_client_token(Path(args.token_file))
            metadata = (("authorization", f"Bearer {token}"),)
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                   ("grpc.keepalive_permit_without_calls", 1),
                   ("grpc.http2.max_pings_without_data", 0),
                   ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if args.tls_ca or args.tls_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(args.tls_ca, "--tls-ca") if args.tls_ca else None,
                private_key=_read(args.tls_key, "--tls-key") if args.tls_key else None,
                certificate_chain=_read(args.tls_cert, "--tls-cert") if args.tls_cert else None)
            channel = grpc.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        flags = ""
        if args.server:
            flags += f" --server {shlex.quote(args.server)}"
        for flag in ("token_file", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(args, flag)
            if value:
                flags += f" --{flag.replace('_', '-')} {shlex.quote(value)}"
        stub = host_pb2_grpc.HostServiceStub(channel)  # type: ignore[no-untyped-call]
        return cls(address, stub, channel, metadata, flags)

    def call(self, method: str, request: Any, timeout: float = 60.0) -> Any:
        import grpc

        try:
            answer = getattr(self.stub, method)(request, timeout=timeout,
                                                metadata=self.metadata or None)
        except grpc.RpcError as exc:
            raise self.failure(exc) from None
        self.connected = True
        return answer

    def stream(self, run_id: str, after_seq: int) -> Iterator[Any]:
        from flowhost._proto import host_pb2 as pb

        stream = self.stub.WatchRun(pb.WatchRunRequest(run_id=run_id, after_seq=after_seq),
                                    metadata=self.metadata or None)
        try:
            for event in stream:
                self.connected = True
                yield event
        finally:
            stream.cancel()

    def failure(self, exc: grpc.RpcError) -> ClientError:
        import grpc

        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE and not self.connected and (
                "stopping" not in details):
            return ClientError(
                f"no flowhost daemon answers at {self.address} ({_short(details)}). Start "
                f"one with `flowhost serve --listen {self.address}`, or point --server or "
                f"${SERVER_ENV} at one that runs", 1, code.name)
        usage = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED)
        return ClientError(f"{self.address}: {details or code.name}",
                           2 if code in usage else 1, code.name)

    def close(self) -> None:
        self.channel.close()


def _short(details: str) -> str:
    low = details.lower()
    if "connection refused" in low:
        return "connection refused"
    if "ssl" in low or "handshake" in low or "tls" in low:
        return "the TLS handshake failed: check --tls-ca, or whether it serves TLS at all"
    if "deadline" in low or "timeout" in low:
        return "no answer in time"
    return details.splitlines()[0][:200] if details else "unreachable"


def guarded(command: Callable[[argparse.Namespace, Client], int]
            ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = Client.of(args)
        try:
            return command(args, client)
        except ClientError as exc:
            print(f"flowhost: {exc}", file=sys.stderr)
            return exc.code
        finally:
            client.close()
    return run


# -- submit -------------------------------------------------------------------------------

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


# -- watching ------------------------------------------------------------------------------

@guarded
def watch_command(args: argparse.Namespace, client: Client) -> int:
    return follow(client, args.run_id, plain=args.no_progress, ask=_terminal() and not args.json,
                  as_json=args.json)


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
                          f"({_short(exc.details() or '')}); reconnecting from event "
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
            found = _result(self.client, self.run_id)
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
        found = _result(self.client, self.run_id)
        if found["status"] != "waiting":
            return None  # answered since: the events that follow show it
        if self.ask:
            self.answer_questions()
            return None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        print(_pending(self.run_id, found, self.client.flags))
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


def _result(client: Client, run_id: str) -> dict[str, Any]:
    from flowhost._proto import host_pb2 as pb

    data = client.call("GetRun", pb.GetRunRequest(run_id=run_id)).result_json
    return dict(json.loads(data))


def _pending(run_id: str, result: dict[str, Any], flags: str) -> str:
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


# -- runs list | show | resolve | cancel ------------------------------------------------

@guarded
def list_command(args: argparse.Namespace, client: Client) -> int:
    from flowhost._proto import host_pb2 as pb

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
    rows = [("RUN ID", "WORKFLOW", "STATUS", "STEPS", "STARTED")]
    rows += [(r["run_id"], r["workflow_id"], r["status"], f"{r['steps_done']}/{r['steps_total']}",
              time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"])))
             for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())
    return 0


@guarded
def show_command(args: argparse.Namespace, client: Client) -> int:
    found = _result(client, args.run_id)
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
        print(_pending(found["run_id"], found, client.flags))
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
