"""A real Prometheus (and a real pushgateway) on free loopback ports for the integration
tests (no tests here): Debian's ``/usr/bin/prometheus`` with a temporary config and TSDB,
queried through its HTTP API; always stopped."""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

PROMETHEUS = shutil.which("prometheus")
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def free_port() -> int:
    """A loopback port nothing listens on now (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def wait_until(what: str, check: Callable[[], bool], timeout: float,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text("utf-8", "replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what} within {timeout} s\n{tail}")
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        return http_get(url, timeout=2)[0] == 200
    except OSError:
        return False


@dataclass
class Server:
    """A server process on 127.0.0.1:port, its output in ``log``."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Prometheus(Server):
    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; its ``data``, or an AssertionError with Prometheus' error."""
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"/api/v1/{path} {params}: {status} {body[:2000]}")
        return answer["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector (a scalar comes back as one unlabelled sample)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        if data["resultType"] == "vector":
            return list(data["result"])
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise AssertionError(f"{expr}: a {data['resultType']}, not an instant vector")

    def finite(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The samples of ``expr`` with a finite value (not NaN, not ±Inf)."""
        return [s for s in self.query(expr, at) if math.isfinite(float(s["value"][1]))]

    def targets_up(self) -> bool:
        active = self.api("targets", state="active")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


S = TypeVar("S", bound=Server)


@dataclass
class Scrape:
    """One scrape job of the temporary config."""

    job: str
    targets: list[str]
    honor_labels: bool = False
    interval: str = "1s"


def _launch(kind: type[S], binary: str, args: list[str], log: Path, timeout: float) -> S:
    """``binary --web.listen-address=127.0.0.1:<free port> args``, output in ``log``;
    returned once its ``/-/ready`` answers 200, stopped if it does not."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", *args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    served = kind(proc, port, log)
    try:
        wait_until(f"{Path(binary).name} ready", lambda: proc.poll() is None
                   and _answers(f"{served.url}/-/ready"), timeout, log)
    except BaseException:
        served.stop()
        raise
    return served


def start_prometheus(folder: Path, scrapes: list[Scrape], rule_files: list[Path],
                     timeout: float = 30) -> Prometheus:
    """Prometheus on a free port, scraping ``scrapes`` and evaluating ``rule_files`` every
    second, its TSDB in ``folder``."""
    assert PROMETHEUS is not None, "no prometheus binary"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                   "scrape_timeout": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": s.job, "scrape_interval": s.interval, "honor_labels": s.honor_labels,
             "static_configs": [{"targets": s.targets}]} for s in scrapes],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return _launch(Prometheus, PROMETHEUS, [
        f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
        "--storage.tsdb.retention.time=1h"], folder / "prometheus.log", timeout)


def start_pushgateway(folder: Path, timeout: float = 30) -> Server:
    assert PUSHGATEWAY is not None, "no pushgateway binary"
    folder.mkdir(parents=True, exist_ok=True)
    return _launch(Server, PUSHGATEWAY, [], folder / "pushgateway.log", timeout)
