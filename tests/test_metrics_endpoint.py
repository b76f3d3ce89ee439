"""``/metrics``, ``/healthz``, ``/readyz`` of a real ``MetricsServer`` on a free loopback
port, content negotiation, and the addresses and URLs it refuses (exit-2 messages)."""

from __future__ import annotations

import gzip
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from flowhost.events import RunStarted, StepFinished
from flowhost.metrics import Families, MetricsObserver, MetricsServer, check_gateway, push
from flowhost.problems import UserInputError


def get(url: str, accept: str = "", encoding: str = "") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if accept:
        request.add_header("Accept", accept)
    if encoding:
        request.add_header("Accept-Encoding", encoding)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Ready:
    def __init__(self) -> None:
        self.why: str | None = None

    def __call__(self) -> str | None:
        return self.why


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, Families, Ready]]:
    families = Families()
    observer = MetricsObserver(families)
    observer(RunStarted(run_id="run-1", workflow_id="wf", description="", total_steps=1,
                        steps=()))
    observer(StepFinished(run_id="run-1", step_id="a", plugin="noop", used_plugin="noop",
                          status="success", attempts=1, duration_s=0.01))
    ready = Ready()
    server = MetricsServer("127.0.0.1:0", families.registry, ready=ready).start()
    try:
        yield server, families, ready
    finally:
        server.close()


def test_metrics_in_either_format(served: tuple[MetricsServer, Families, Ready]) -> None:
    server, _, _ = served
    code, headers, body = get(server.url)
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert 'flowhost_steps_total{plugin="noop",status="success"} 1.0' in text
    assert "run-1" not in text and "flowhost_runs_active 1.0" in text
    code, headers, body = get(server.url, accept="application/openmetrics-text; "
                              "version=1.0.0; charset=utf-8")
    assert code == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert '# {run_id="run-1"} 0.01' in body.decode() and body.endswith(b"# EOF\n")
    code, headers, body = get(server.url, encoding="gzip")
    assert headers.get("Content-Encoding") == "gzip"
    assert b"flowhost_steps_total" in gzip.decompress(body)


def test_health_and_readiness(served: tuple[MetricsServer, Families, Ready]) -> None:
    server, _, ready = served
    base = server.url.removesuffix("/metrics")
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/readyz")[:3:2] == (200, b"ready\n")
    ready.why = "draining"
    code, _, body = get(base + "/readyz")
    assert code == 503 and body == b"not ready: draining\n"
    assert get(base + "/healthz")[0] == 200  # alive all the same
    assert get(base + "/nope")[0] == 404


def test_an_address_in_use_or_malformed_is_a_user_error() -> None:
    families = Families()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserInputError, match="in use"):
            MetricsServer(f"127.0.0.1:{port}", families.registry)
    for bad in ("9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":9464"):
        with pytest.raises(UserInputError, match="not HOST:PORT"):
            MetricsServer(bad, families.registry)
    with pytest.raises(UserInputError, match="unknown host"):
        MetricsServer("no-such-host.invalid:9464", families.registry)
    with pytest.raises(UserInputError, match="not an address of this machine"):
        MetricsServer("192.0.2.1:9464", families.registry)  # TEST-NET-1: never local


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    families = Families()
    try:
        server = MetricsServer("[::1]:0", families.registry)
    except UserInputError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server.start()
    try:
        assert server.address.startswith("[::1]:")
        assert get(server.url)[0] == 200
    finally:
        server.close()


def test_pushgateway_urls() -> None:
    assert check_gateway("http://127.0.0.1:9091") == "http://127.0.0.1:9091"
    assert check_gateway("https://push.example:443/") == "https://push.example:443/"
    for bad in ("ftp://x", "127.0.0.1:9091", "http://", "http://h:9091/?a=1"):
        with pytest.raises(UserInputError, match="--pushgateway"):
            check_gateway(bad)


def test_a_gateway_that_is_down_is_a_reason_not_an_exception() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        why = push(f"http://127.0.0.1:{port}", Families().registry, "wf")
    assert why is not None and "cannot reach it" in why
