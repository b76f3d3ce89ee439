"""The HTTP side of ``--metrics-listen``: ``/metrics``, ``/healthz``, ``/readyz``.

A stdlib ``ThreadingHTTPServer`` on a daemon thread: a scrape never waits on the event loop
that runs steps (and a slow scraper never holds up a run). The socket is bound when the
``MetricsServer`` is made, before any run starts, so an address that is taken or wrong is
an exit-2 message and not a failure halfway through a run.

``/metrics`` speaks what the scraper asks for (``Accept``): the OpenMetrics text, which
carries the run ids as exemplars, or the classic Prometheus text; gzip when accepted.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from flowhost.metrics.address import split_address
from flowhost.problems import UserInputError

# ``None`` when ready, else why not (draining, the store cannot be read).
Readiness = Callable[[], str | None]


def _always_ready() -> str | None:
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scrape in progress never keeps the process alive
    allow_reuse_address = True  # a restarted daemon binds its port again at once

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 ready: Readiness, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.registry = registry
        self.ready = ready
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # a scraper keeps its connection between scrapes...
    timeout = 300  # ...and one that went away does not keep a thread forever

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            try:
                why = self.server.ready()
            except Exception as exc:  # a probe that fails says so, it does not crash
                why = f"readiness check failed: {type(exc).__name__}: {exc}"
            if why is None:
                self._reply(200, b"ready\n")
            else:
                self._reply(503, f"not ready: {why}\n".encode())
        else:
            self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body, compresslevel=1)  # cheap: a scrape every few seconds
            headers.append(("Content-Encoding", "gzip"))
        self._reply(200, body, headers)

    def _reply(self, code: int, body: bytes,
               headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        for name, value in headers or [("Content-Type", "text/plain; charset=utf-8")]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not news: no line per request."""


class MetricsServer:
    """Bound at construction (``UserInputError`` when it cannot be), serving from
    ``start()`` until ``close()``."""

    def __init__(self, listen: str, registry: CollectorRegistry, *,
                 ready: Readiness = _always_ready, flag: str = "--metrics-listen") -> None:
        host, port = split_address(listen, flag)
        name = host.strip("[]")
        family = socket.AF_INET6 if ":" in name else socket.AF_INET
        try:
            self._server = _Server((name, port), registry, ready, family)
        except socket.gaierror as exc:
            raise UserInputError(f"{flag} {listen}: unknown host {host!r} ({exc.strerror}); "
                                 "give an address of this machine, e.g. 127.0.0.1:9464"
                                 ) from None
        except OSError as exc:
            raise UserInputError(f"{flag} {listen}: cannot listen there: {_why(exc)}"
                                 ) from None
        bound_host, bound_port = self._server.socket.getsockname()[:2]
        shown = f"[{bound_host}]" if family == socket.AF_INET6 else str(bound_host)
        self.address = f"{shown}:{bound_port}"
        self.url = f"http://{self.address}/metrics"
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            kwargs={"poll_interval": 0.5},
                                            name="flowhost-metrics", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            # ``shutdown`` waits for the serving loop to look at its flag, which it does
            # between requests or every poll interval: a connection of our own makes it
            # look at once, so a one-off run does not end up to a poll interval later.
            stopping = threading.Thread(target=self._server.shutdown, daemon=True)
            stopping.start()
            while stopping.is_alive():
                self._wake()
                stopping.join(0.01)
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def _wake(self) -> None:
        host, port = self._server.socket.getsockname()[:2]
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            pass


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return ("the address is in use (another flowhost, or another program, listens "
                "there); pick another port, or port 0 for any free one")
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); pick a port above 1024"
    return exc.strerror or str(exc)
