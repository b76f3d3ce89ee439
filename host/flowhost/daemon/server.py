"""The daemon's lifecycle: its settings (``ServeConfig``), the gRPC server (HostService, the
standard health service, server reflection, the token interceptor, TLS), signals, and the
ordered drain.

SIGTERM (or Ctrl-C): health says NOT_SERVING and ``SubmitRun`` answers UNAVAILABLE; the
workers get ``drain_timeout`` seconds to finish their running steps (what is left is
checkpointed ``interrupted``); open ``WatchRun`` streams end with UNAVAILABLE (clients
reconnect to the next daemon with the last seq they saw); exit 0. A second signal ends
everything at once. The next start goes on with every accepted, unfinished run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flowhost._proto import host_pb2, host_pb2_grpc
from flowhost.daemon.auth import SERVICE, Authenticator, Token, TokenInterceptor, load_tokens
from flowhost.daemon.journal import Journal, Tails
from flowhost.daemon.service import HostService
from flowhost.daemon.supervisor import Supervisor, SupervisorConfig
from flowhost.files import MAX_PEM_BYTES, read_bounded
from flowhost.metrics.address import split_address
from flowhost.metrics.daemon import DaemonMetrics
from flowhost.problems import UserInputError
from flowhost_sdk.decoding import add_parsing_in_handler

log = logging.getLogger("flowhost.daemon")
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
DEFAULT_DRAIN_TIMEOUT = 20.0
DEFAULT_MAX_RUNS = 4
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
READY = "flowhost serve: listening on"


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    state_dir: Path  # the runs' working directories; and the store, unless store_url
    store_url: str | None = None  # a PostgreSQL store (postgresql://…)
    listen: str = DEFAULT_LISTEN
    metrics_listen: str = DEFAULT_METRICS_LISTEN
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_runs: int = DEFAULT_MAX_RUNS
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    insecure: bool = False
    env_allow: tuple[str, ...] = ()
    config_path: Path | None = None  # the flowhost.toml the workers read too
    # False: metrics_listen is the default, and the daemon goes on without metrics when
    # another process has that address
    metrics_required: bool = True
    tokens: tuple[Token, ...] = field(default=(), repr=False)

    def checked(self) -> ServeConfig:
        """Refuse what cannot serve safely or at all (``UserInputError``: exit 2); the
        tokens loaded."""
        host, _ = split_address(self.listen, "--listen")
        split_address(self.metrics_listen, "--metrics-listen")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UserInputError("--tls-cert and --tls-key go together (the daemon's "
                                 "certificate and its private key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise UserInputError("--tls-client-ca (mutual TLS) needs the daemon's own "
                                 "--tls-cert and --tls-key")
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                           ("--tls-client-ca", self.tls_client_ca)):
            if path is not None:
                _pem(path, flag)
        if self.max_runs < 1:
            raise UserInputError(f"--max-runs must be at least 1, got {self.max_runs}")
        if not 0 <= self.drain_timeout <= 86_400:
            raise UserInputError("--drain-timeout: seconds, from 0 to 86400")
        tokens = tuple(load_tokens(self.token_file)) if self.token_file is not None else ()
        # CONTRACT §6: a non-loopback --listen needs TLS or a token (both is better: the
        # README says so), or --insecure.
        if not is_loopback(host) and not self.insecure and (
                self.tls_cert is None and not tokens):
            raise UserInputError(
                f"--listen {self.listen}: not a loopback address, and the daemon would "
                "answer anyone who reaches it in plain text. Serve with TLS (--tls-cert, "
                "--tls-key) and authenticate clients (--token-file, or --tls-client-ca for "
                "client certificates), or pass --insecure on a network you trust")
        return ServeConfig(**{**self.__dict__, "tokens": tokens})


def _pem(path: Path, flag: str) -> bytes:
    return read_bounded(path, MAX_PEM_BYTES, flag=flag, what="a PEM file")


class Daemon:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.journal = Journal(config.state_dir, store_url=config.store_url)
        self.tails = Tails(self.journal)
        self.supervisor = Supervisor(SupervisorConfig(
            state_dir=config.state_dir, store_url=config.store_url, max_runs=config.max_runs,
            drain_timeout=config.drain_timeout, config_path=config.config_path,
            env_allow=config.env_allow,
            masked=tuple(token.value for token in config.tokens if token.value)),
            self.journal, self.tails)
        self.authenticator = Authenticator(config.tokens,
                                           client_certs=config.tls_client_ca is not None)
        self.service = HostService(self.journal, self.tails, self.supervisor,
                                   self.authenticator)
        self.health = health.aio.HealthServicer()
        self.server: aio.Server | None = None
        self.address = ""
        self._stop = asyncio.Event()
        self._signals = 0
        # bound now, before anything starts: an address that cannot be is exit 2
        self.metrics = DaemonMetrics(
            config.metrics_listen, self.journal, self.tails,
            required=config.metrics_required, queued=lambda: len(self.supervisor.queue),
            draining=lambda: self._stop.is_set() or self.service.draining)

    def _grpc_server(self) -> aio.Server:
        interceptors = [TokenInterceptor(self.authenticator)] if self.config.tokens else []
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
            ("grpc.so_reuseport", 0),
            # An idle WatchRun of minutes stays open: clients may ping every 10 s or more
            # (never counted as abuse), and the server pings idle connections every minute.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 0),
        ]
        server = aio.server(interceptors=interceptors, options=options)
        # a malformed request: INVALID_ARGUMENT, not UNKNOWN and a traceback logged
        add_parsing_in_handler(host_pb2_grpc.add_HostServiceServicer_to_server, self.service,
                               server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (host_pb2.DESCRIPTOR.services_by_name["HostService"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        return server

    def _bind(self, server: aio.Server) -> int:
        config = self.config
        try:
            if config.tls_cert is None or config.tls_key is None:
                return server.add_insecure_port(config.listen)
            client_ca = (_pem(config.tls_client_ca, "--tls-client-ca")
                         if config.tls_client_ca else None)
            credentials = grpc.ssl_server_credentials(
                [(_pem(config.tls_key, "--tls-key"), _pem(config.tls_cert, "--tls-cert"))],
                root_certificates=client_ca,
                require_client_auth=client_ca is not None)
            return server.add_secure_port(config.listen, credentials)
        except RuntimeError as exc:
            why = (" (or the certificate and key are unusable: do they match?)"
                   if config.tls_cert else "")
            raise UserInputError(f"--listen {config.listen}: cannot listen there{why}: "
                                 f"{exc}") from None

    async def start(self) -> None:
        await self.journal.open()
        server = self._grpc_server()
        port = self._bind(server)
        if not port:
            raise UserInputError(f"--listen {self.config.listen}: cannot listen there (in "
                                 "use, or not an address of this machine)")
        host, _ = split_address(self.config.listen, "--listen")
        self.address = f"{host}:{port}"
        await self.metrics.start()  # before the workers: it counts what they commit
        await self.supervisor.start()
        await server.start()
        self.server = server
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self.start()
            security = ("" if self.config.tls_cert is None else
                        " with mTLS" if self.config.tls_client_ca else " with TLS")
            metrics = f"; metrics on {self.metrics.url}" if self.metrics.url else ""
            print(f"{READY} {self.address}{security} (state {self._state}, at "
                  f"most {self.config.max_runs} runs at once{metrics})", flush=True)
            await self._stop.wait()
            await self.drain()
        finally:
            await self.close()
        log.info("flowhost serve: stopped")
        return 0

    @property
    def _state(self) -> str:
        if self.config.store_url is None:
            return str(self.config.state_dir)
        from flowhost.store.postgres.url import PostgresUrl

        return f"{PostgresUrl(url=self.config.store_url).where}, runs in {self.config.state_dir}"

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("flowhost serve: stopping: runs checkpoint within %gs (signal again "
                     "to stop at once)", self.config.drain_timeout)
            self._stop.set()
            return
        log.info("flowhost serve: stopping at once")
        self.supervisor.kill_all()
        sys.stderr.flush()
        os._exit(1)

    async def drain(self) -> None:
        """The ordered stop (see the module's docstring)."""
        await self.health.enter_graceful_shutdown()
        self.service.draining = True
        await self.supervisor.drain()
        await self.tails.close()  # open watches end: UNAVAILABLE, reconnect later
        if self.server is not None:
            await self.server.stop(grace=2.0)

    async def close(self) -> None:
        await self.tails.close()
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None
        await self.supervisor.close()
        await self.metrics.close()  # last: /readyz says why while the daemon stops
        await self.journal.close()


def serve(config: ServeConfig) -> int:
    """Run the daemon until it is stopped; its exit code."""
    checked = config.checked()
    os.makedirs(checked.state_dir, mode=0o700, exist_ok=True)
    daemon = Daemon(checked)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(daemon.serve())
    return 1
