"""flowhost_sdk: what a plugin author needs, and nothing of the host.

    from flowhost_sdk import Plugin, InvocationContext, TransientError, PermanentError

Serving plugins over gRPC (``serve``, ``serve_async``, ``PluginServer``) imports grpc, so
those names are loaded on first use: importing a plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowhost_sdk.errors import (
    ErrorKind,
    NeedsIntervention,
    PermanentError,
    PluginError,
    TransientError,
)
from flowhost_sdk.plugin import InvocationContext, Plugin, check_plugin_class

if TYPE_CHECKING:
    from flowhost_sdk.server import PluginServer, serve, serve_async

__all__ = [
    "ErrorKind",
    "InvocationContext",
    "NeedsIntervention",
    "PermanentError",
    "Plugin",
    "PluginError",
    "PluginServer",
    "TransientError",
    "check_plugin_class",
    "serve",
    "serve_async",
]

__version__ = "0.1.0"

_LAZY = {"serve", "serve_async", "PluginServer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from flowhost_sdk import server

        return getattr(server, name)
    raise AttributeError(f"module 'flowhost_sdk' has no attribute {name!r}")
