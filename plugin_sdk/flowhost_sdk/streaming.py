"""``InvokeStream`` on the server's side: a call's ``ctx.progress()`` sent while it runs.

The plugin reports progress from wherever it runs (a worker thread for a sync plugin, the
event loop for an async one); the stream sends the latest report each time the previous one
is on its way, so a plugin that reports in a tight loop never makes the call wait for the
network, and the last report before the result is always sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flowhost_sdk import protocol
from flowhost_sdk._proto import plugin_pb2 as pb

T = TypeVar("T")
Write = Callable[[pb.InvokeUpdate], Awaitable[None]]


class ProgressFeed:
    """The newest progress of one call, handed from the plugin to the stream's writer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._latest: pb.Progress | None = None
        self.changed = asyncio.Event()

    def report(self, fraction: float, message: str) -> None:
        """``InvocationContext``'s progress callback: from any thread."""
        if not math.isfinite(fraction):
            return  # NaN says nothing about how far the call is
        progress = pb.Progress(fraction=fraction, message=protocol.sendable_text(message))
        if threading.get_ident() == self._loop_thread:
            self._put(progress)
        else:
            # a closed loop: the server stopped, and nobody listens any more
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._put, progress)

    def _put(self, progress: pb.Progress) -> None:
        self._latest = progress
        self.changed.set()

    def take(self) -> pb.Progress | None:
        """The report not sent yet, if there is one."""
        progress, self._latest = self._latest, None
        self.changed.clear()
        return progress


async def stream_call(call: Coroutine[Any, Any, T], feed: ProgressFeed, write: Write) -> T:
    """Run ``call`` while writing its progress updates; its result (or its exception).

    The call runs in a task of its own so that progress is written while it goes on; when
    the stream is cancelled (the client gave up, or its deadline passed), the call is
    cancelled the same way a unary call's handler would be.
    """
    task = asyncio.ensure_future(call)
    try:
        while not task.done():
            waiter = asyncio.ensure_future(feed.changed.wait())
            try:
                await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            progress = feed.take()
            if progress is not None:
                await write(pb.InvokeUpdate(progress=progress))
        progress = feed.take()  # reported just before the call returned
        if progress is not None and not task.cancelled() and task.exception() is None:
            await write(pb.InvokeUpdate(progress=progress))
        return task.result()
    finally:
        if not task.done():  # cancelled, or a write failed: the call is given up too
            task.cancel()
            await asyncio.wait((task,))
