"""The errors a plugin raises to tell the host what recovery makes sense.

The class says whether retrying can help; ``hint`` says what a human should do.
Any other exception a plugin raises is treated like ``PermanentError``.
"""

from __future__ import annotations

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

    ``retry_after`` (seconds) asks the host to wait at least that long before the next attempt.
    """

    kind: ClassVar[ErrorKind] = "transient"

    def __init__(
        self, message: str = "", *, hint: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0 seconds")
        self.retry_after = retry_after


class PermanentError(PluginError):
    """Retrying this plugin with the same inputs is pointless; a fallback may still work."""

    kind: ClassVar[ErrorKind] = "permanent"


class NeedsIntervention(PluginError):
    """Only a human can fix this (a missing service, a permission, a configuration)."""

    kind: ClassVar[ErrorKind] = "intervention"
