"""Helpers of the daemon tests (no tests here): the real ``flowhost serve`` as a subprocess
on a free loopback port with its own state dir, always stopped, and a raw grpcio client
written from ``host.proto``'s generated code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from plugin_servers import ready_line

from flowhost._proto import host_pb2 as pb
from flowhost._proto import host_pb2_grpc

READY = re.compile(r"^flowhost serve: listening on (?P<address>\S+)")
FINAL = ("success", "failed", "aborted", "cancelled")


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    address: str
    state_dir: Path
    log: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    def stub(self, *, token: str | None = None,
             credentials: grpc.ChannelCredentials | None = None,
             server_name: str | None = None) -> Any:
        return stub(self.address, token=token, credentials=credentials,
                    server_name=server_name, keep=self.channels)

    def stderr(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        for channel in self.channels:
            channel.close()
        self.channels.clear()
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


def flowhost_command() -> list[str]:
    script = Path(sys.executable).parent / "flowhost"
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowhost"]


def start_daemon(state_dir: Path, *args: str, log: Path, cwd: Path,
                 env: dict[str, str] | None = None, timeout: float = 30) -> Daemon:
    listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("ab") as err:
        proc = subprocess.Popen([*flowhost_command(), "serve", "--state-dir", str(state_dir),
                                 *listen, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=err,
                                text=True, env=full_env)
    line = ready_line(proc, READY, "flowhost serve", log, timeout)
    found = READY.match(line)
    assert found is not None
    return Daemon(proc, found["address"], state_dir, log)


StartDaemon = Callable[..., Daemon]


def start_daemons(tmp_path: Path) -> Iterator[StartDaemon]:
    """The ``daemon`` fixture of the daemon tests: ``daemon("--max-runs", "1")`` starts a
    daemon on its own state dir (``state=`` another); every one started is stopped."""
    started: list[Daemon] = []

    def start(*args: str, state: Path | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Daemon:
        served = start_daemon(state or tmp_path / "state", *args,
                              log=tmp_path / f"daemon-{len(started)}.log", cwd=cwd or tmp_path,
                              env=env)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.stop(signal.SIGKILL if served.proc.poll() is None else signal.SIGTERM)


class _Token(grpc.AuthMetadataPlugin):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, context: Any, callback: Any) -> None:
        callback((("authorization", f"Bearer {self.token}"),), None)


def stub(address: str, *, token: str | None = None,
         credentials: grpc.ChannelCredentials | None = None, server_name: str | None = None,
         keep: list[grpc.Channel] | None = None) -> Any:
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    if credentials is not None:
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address)
    if keep is not None:
        keep.append(channel)
    stub = host_pb2_grpc.HostServiceStub(channel)
    stub.metadata = (("authorization", f"Bearer {token}"),) if token else None
    return stub


def meta(stub: Any) -> dict[str, Any]:
    return {"metadata": stub.metadata} if stub.metadata else {}


def submit(stub: Any, text: str, *, request_id: str = "", name: str = "",
           overrides: dict[str, str] | None = None) -> str:
    response = stub.SubmitRun(pb.SubmitRunRequest(spec_yaml=text, request_id=request_id,
                                                  spec_name=name, overrides=overrides or {}),
                              timeout=60, **meta(stub))
    return str(response.run_id)


def result(stub: Any, run_id: str) -> dict[str, Any]:
    data = stub.GetRun(pb.GetRunRequest(run_id=run_id), timeout=30, **meta(stub)).result_json
    return dict(json.loads(data))


def wait_for(stub: Any, run_id: str, statuses: Sequence[str] = FINAL,
             timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = result(stub, run_id)
        if found["status"] in statuses:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {found['status']}, not {statuses}")
        time.sleep(0.05)


def watch(stub: Any, run_id: str, after_seq: int = 0, timeout: float = 60) -> list[Any]:
    return list(stub.WatchRun(pb.WatchRunRequest(run_id=run_id, after_seq=after_seq),
                              timeout=timeout, **meta(stub)))


def wait_file(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text()


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")
