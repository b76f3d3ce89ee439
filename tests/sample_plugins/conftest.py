"""Fixtures for the sample plugin tests: contexts, a scaffolded project, fake Redis servers."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flowhost_sample_fastapi.plugin import FastAPIScaffolder
from redis_fake import FakeRedisServer

from flowhost_sdk import InvocationContext

ProgressLog = list[tuple[float, str]]


@pytest.fixture
def progress() -> ProgressLog:
    """The (fraction, message) pairs reported through the ``ctx`` fixture."""
    return []


@pytest.fixture
def ctx(progress: ProgressLog) -> InvocationContext:
    return InvocationContext(
        run_id="t",
        step_id="s",
        on_progress=lambda fraction, message: progress.append((fraction, message)),
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
