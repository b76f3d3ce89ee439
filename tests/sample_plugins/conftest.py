"""Fixtures for the sample plugin tests: contexts, a scaffolded project, a fake Redis."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flowhost_sample_fastapi.plugin import FastAPIScaffolder

from flowhost_sdk import InvocationContext

SAMPLES = Path(__file__).resolve().parents[2] / "sample_plugins"

ProgressLog = list[tuple[float, str]]


@pytest.fixture
def progress() -> ProgressLog:
    """The (fraction, message) pairs reported through the ``ctx`` fixture."""
    return []


@pytest.fixture
def ctx(progress: ProgressLog) -> InvocationContext:
    return InvocationContext(
        run_id="t", step_id="s", on_progress=lambda fraction, message: progress.append(
            (fraction, message)
        )
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A freshly scaffolded project in tmp_path."""
    outputs = FastAPIScaffolder().invoke(
        FastAPIScaffolder.Inputs(app_name="shop", directory=str(tmp_path)),
        InvocationContext(run_id="t", step_id="scaffold"),
    )
    return Path(outputs.project_path)


@pytest.fixture
def closed_port() -> int:
    """A loopback port on which nothing listens (it was just bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class FakeRedisServer:
    """A loopback TCP server that answers RESP commands from a fixed table of replies."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self.replies = replies
        self.commands: list[list[str]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self._answer(conn)
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as reader:
            while header := reader.readline():
                count = int(header[1:])
                args: list[str] = []
                for _ in range(count):
                    length = int(reader.readline()[1:])
                    args.append(reader.read(length + 2)[:-2].decode())
                self.commands.append(args)
                conn.sendall(self.replies.get(args[0].upper(), b"-ERR unknown command\r\n"))


@pytest.fixture
def fake_redis() -> Iterator[Callable[..., FakeRedisServer]]:
    """Start fake Redis servers: ``fake_redis(PING=b"+PONG\\r\\n")``; all stop at teardown."""
    servers: list[FakeRedisServer] = []

    def start(**replies: bytes) -> FakeRedisServer:
        server = FakeRedisServer(replies or {"PING": b"+PONG\r\n", "AUTH": b"+OK\r\n"})
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
