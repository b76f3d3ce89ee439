"""How the client commands reach the daemon (``flowhost.v1.HostService``), and what its
failures mean to the person who typed the command.

Every client command takes the same flags (``--server``, a token, TLS), opens one channel,
calls, and turns a failed call into one line and an exit code: a daemon that is not there
says where it was looked for and how to start one; a request it finds wrong (invalid, of
an unknown run, untimely, unauthenticated) exits 2, like any other usage error. Kept apart
from the commands so that each of them, and the watcher that follows a run, says nothing of
connections. grpc is imported when a connection is made, not when the CLI builds its parser.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowhost.files import MAX_PEM_BYTES, read_bounded
from flowhost.problems import UserInputError, shorten

if TYPE_CHECKING:
    import grpc

SERVER_ENV = "FLOWHOST_SERVER"
DEFAULT_SERVER = "127.0.0.1:50051"


class ClientError(Exception):
    """What the daemon answered, for the user (``code``: the exit code)."""

    def __init__(self, message: str, code: int = 1, status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # the gRPC status code's name


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
                f"no flowhost daemon answers at {self.address} ({short_reason(details)}). Start "
                f"one with `flowhost serve --listen {self.address}`, or point --server or "
                f"${SERVER_ENV} at one that runs", 1, code.name)
        usage = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED)
        return ClientError(f"{self.address}: {details or code.name}",
                           2 if code in usage else 1, code.name)

    def close(self) -> None:
        self.channel.close()


def short_reason(details: str) -> str:
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


def run_result(client: Client, run_id: str) -> dict[str, Any]:
    """The run's result as the daemon has it now (``GetRun``)."""
    from flowhost._proto import host_pb2 as pb

    data = client.call("GetRun", pb.GetRunRequest(run_id=run_id)).result_json
    return dict(json.loads(data))
