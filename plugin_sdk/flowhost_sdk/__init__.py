"""flowhost_sdk: what a plugin author needs, and nothing of the host.

    from flowhost_sdk import Plugin, InvocationContext, TransientError, PermanentError
"""

from flowhost_sdk.errors import (
    ErrorKind,
    NeedsIntervention,
    PermanentError,
    PluginError,
    TransientError,
)
from flowhost_sdk.plugin import InvocationContext, Plugin, check_plugin_class

__all__ = [
    "ErrorKind",
    "InvocationContext",
    "NeedsIntervention",
    "PermanentError",
    "Plugin",
    "PluginError",
    "TransientError",
    "check_plugin_class",
]

__version__ = "0.1.0"
