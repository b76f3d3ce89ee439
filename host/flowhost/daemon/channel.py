"""The line protocol between the daemon and its helper processes (workers, the checker):
one JSON object per line over a socket pair the daemon made, passed to the helper as a file
descriptor. Not stdin/stdout: plugin code in a helper may print, or read its stdin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

LIMIT = 64 * 1024 * 1024  # one message: a spec of the largest size the API takes, and more


class Channel:
    """Both ends use it: ``send`` a dict, ``receive`` the next one (None once the other end
    has gone)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._lock = asyncio.Lock()

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=LIMIT)
        return cls(reader, writer)

    async def send(self, message: dict[str, Any]) -> bool:
        """False when the other end is gone."""
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")
        async with self._lock:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def receive(self) -> dict[str, Any] | None:
        try:
            line = await self._reader.readline()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            return None
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


def die_with_parent(parent: int) -> None:
    """End this helper when the daemon that started it ends, even by SIGKILL (Linux): it
    must not go on executing a run nobody supervises. Elsewhere the helper notices the
    closed channel instead."""
    import os
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the daemon died before the line above
        os._exit(1)
