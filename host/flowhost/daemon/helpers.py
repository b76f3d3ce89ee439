"""Starting the daemon's helper processes (workers, the checker) and telling how they ended.

A helper is ``python -m MODULE --fd N --parent PID ...``: its end of a socket pair is
descriptor N (``flowhost.daemon.channel``); its stdout and stderr are the daemon's stderr
(plugins' prints land in the daemon's log, never in the protocol). It runs in a session of
its own, so a terminal's Ctrl-C reaches the daemon only, which decides what helpers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from flowhost.daemon.channel import Channel

START_TIMEOUT_S = 60.0


class HelperError(Exception):
    """A helper did not start."""


@dataclass(slots=True)
class Helper:
    name: str
    proc: asyncio.subprocess.Process
    channel: Channel

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def ended(self) -> str:
        """Wait for its exit; how it ended, in words."""
        code = await self.proc.wait()
        self.channel.close()
        return exit_reason(code)


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


async def start(name: str, module: str, *args: str, env: Mapping[str, str]) -> Helper:
    """Start a helper with the environment ``env`` and wait for its ``ready`` line."""
    ours, theirs = socket.socketpair()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--fd", str(theirs.fileno()),
            "--parent", str(os.getpid()), *args,
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
            stderr=sys.stderr.fileno(), start_new_session=True, env=dict(env))
    except OSError as exc:
        ours.close()
        raise HelperError(f"cannot start the {name} ({exc})") from None
    finally:
        theirs.close()
    channel = await Channel.over(ours)
    helper = Helper(name, proc, channel)
    try:
        hello = await asyncio.wait_for(channel.receive(), START_TIMEOUT_S)
    except TimeoutError:
        hello = None
    if hello is None or hello.get("type") != "ready":
        helper.kill()
        raise HelperError(f"the {name} did not start ({await helper.ended()})")
    return helper
