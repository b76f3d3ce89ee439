"""Start real ``flowhost-plugin serve`` processes on free loopback ports, and run the real
``flowhost`` command."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
READY = re.compile(r"^flowhost-plugin: serving (?P<names>.+) on (?P<host>\S+):(?P<port>\d+)")


def plugin_command() -> list[str]:
    """The real console script next to this Python, or the module when it is not installed."""
    script = Path(sys.executable).parent / "flowhost-plugin"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowhost_sdk"]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    host: str
    port: int
    names: list[str]
    log: Path
    ready_line: str = ""
    args: tuple[str, ...] = field(default=())

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, name: str, scheme: str = "grpc") -> str:
        return f"{scheme}://{self.address}/{name}"

    def stderr(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_server(*args: str, log: Path, cwd: Path = HERE, timeout: float = 30) -> Served:
    """Start ``flowhost-plugin serve ARGS`` (port 0 unless --listen is given) and wait for
    its ready line; raise with its stderr when it exits instead."""
    listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as err:
        proc = subprocess.Popen([*plugin_command(), "serve", *args, *listen], cwd=cwd,
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    line = ready_line(proc, READY, "flowhost-plugin", log, timeout)
    match = READY.match(line)
    assert match is not None
    return Served(proc, match["host"], int(match["port"]), match["names"].split(", "), log,
                  line.strip(), args)


def ready_line(proc: subprocess.Popen[str], ready: re.Pattern[str], what: str, log: Path,
               timeout: float) -> str:
    """The first line of ``proc``'s stdout that ``ready`` matches; when it exits instead, or
    the time is up, it is killed and the error says what its log holds."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                line = proc.stdout.readline()
                if ready.match(line):
                    return line
                if not line and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
    finally:
        selector.close()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    raise RuntimeError(f"{what} did not get ready (exit {proc.returncode}):\n"
                       f"{log.read_text('utf-8', 'replace')}")


StartServer = Callable[..., Served]


def flowhost(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real ``flowhost`` command (the console script next to this Python)."""
    script = Path(sys.executable).parent / "flowhost"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flowhost"]
    return subprocess.run([*command, *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
