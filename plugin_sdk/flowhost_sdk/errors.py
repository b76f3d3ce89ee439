"""The errors a plugin raises to tell the host what recovery makes sense.

The class says whether retrying can help; ``hint`` says what a human should do.
Any other exception a plugin raises is treated like ``PermanentError``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

ErrorKind = Literal["transient", "permanent", "intervention"]


class PluginError(Exception):
    """Base of the errors a plugin may raise on purpose."""

    kind: ClassVar[ErrorKind] = "permanent"

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class TransientError(PluginError):
    """Retrying may help: a timeout, a lock, a service that is still starting, a rate limit.

    ``retry_after`` (seconds, finite and >= 0) asks the host to wait at least that long before
    the next attempt.
    """

    kind: ClassVar[ErrorKind] = "transient"

    def __init__(
        self, message: str = "", *, hint: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = _checked_retry_after(retry_after)


def _checked_retry_after(value: float | None) -> float | None:
    """``value`` itself when it is a usable pause. Infinity, NaN or 1e999 would make the host
    wait forever (NaN also slips through every comparison), so they are refused here, where
    the plugin author sees the traceback, rather than stalling a run later."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (int, float)):
        raise TypeError(f"retry_after must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"retry_after must be a finite number of seconds >= 0, got {value!r}")
    return value


class PermanentError(PluginError):
    """Retrying this plugin with the same inputs is pointless; a fallback may still work."""

    kind: ClassVar[ErrorKind] = "permanent"


class NeedsIntervention(PluginError):
    """Only a human can fix this (a missing service, a permission, a configuration)."""

    kind: ClassVar[ErrorKind] = "intervention"
