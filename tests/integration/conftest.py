"""Fixtures: real plugin servers on free loopback ports, always stopped; test certificates
made at test time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import Certs, make_certs
from plugin_servers import HERE, Served, StartServer, start_server


@pytest.fixture
def plugin_server(tmp_path: Path) -> Iterator[StartServer]:
    """``plugin_server("noop", "remote_plugins:Slow", "--grace", "1")``; all are stopped."""
    started: list[Served] = []

    def start(*args: str, cwd: Path = HERE) -> Served:
        served = start_server(*args, log=tmp_path / f"server-{len(started)}.log", cwd=cwd)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.stop()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))
