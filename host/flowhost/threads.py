"""The host's pool for sync plugins and blocking checks: daemon threads (the SDK's pool);
and ``run_main``, a command's event loop whose default executor is daemon threads too.

A sync plugin that ignores its timeout keeps its thread busy; with the standard
``ThreadPoolExecutor`` the interpreter would wait for it at exit and the CLI would hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from flowhost_sdk.threads import DaemonPool

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_shared: DaemonPool | None = None
_shared_lock = threading.Lock()


def shared_executor() -> DaemonPool:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DaemonPool(max_workers=128, name="flowhost-worker")
        return _shared


class _AbandoningPool(ThreadPoolExecutor):
    """An event loop's default executor (which must be a ``ThreadPoolExecutor``) whose work
    goes to daemon threads that the loop's end does not wait for. ``asyncio.run`` waits for
    every thread of the default executor, without a time limit, so an async plugin awaiting
    ``asyncio.to_thread`` of a call that never returns would keep a command from exiting
    after its run ended, even after Ctrl-C."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)  # (never used: it starts threads only on submit)
        self._daemons = DaemonPool(name="flowhost-to-thread")

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return self._daemons.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._daemons.shutdown(wait=False, cancel_futures=cancel_futures)
        super().shutdown(wait=False, cancel_futures=cancel_futures)


def run_main(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` for a command that runs plugins: the loop's default executor
    (``asyncio.to_thread``, ``run_in_executor(None, ...)``) is daemon threads, abandoned
    when the command is done instead of waited for."""
    with asyncio.Runner() as runner:
        runner.get_loop().set_default_executor(_AbandoningPool())
        return runner.run(main)
