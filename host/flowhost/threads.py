"""The host's pool for sync plugins and blocking checks: daemon threads (the SDK's pool).

A sync plugin that ignores its timeout keeps its thread busy; with the standard
``ThreadPoolExecutor`` the interpreter would wait for it at exit and the CLI would hang.
"""

from __future__ import annotations

import threading

from flowhost_sdk.threads import DaemonPool

_shared: DaemonPool | None = None
_shared_lock = threading.Lock()


def shared_executor() -> DaemonPool:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DaemonPool(max_workers=128, name="flowhost-worker")
        return _shared
