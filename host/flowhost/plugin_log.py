"""The logger a plugin gets as ``ctx.logger`` in a run with secrets: its records are masked
before any handler sees them, so a plugin that logs a secret it was given does not print it.

It is a plain ``logging.Logger`` outside the logging manager's registry (one per attempt, so
none accumulate in a long-running process), whose parent is ``flowhost.plugin.<step>``:
records reach the same handlers as those of the SDK's default logger.
"""

from __future__ import annotations

from flowhost.redact import Redactor
from flowhost_sdk import InvocationContext
from flowhost_sdk.masking import MaskingLogger


class RedactingLogger(MaskingLogger):
    """``MaskingLogger`` with the run's redactor (its secrets in every form it masks)."""

    def __init__(self, step_id: str, redactor: Redactor) -> None:
        super().__init__(step_id, redactor.text)
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor


def secrets_for(ctx: InvocationContext, text: str) -> list[str]:
    """The run's secrets ``text`` holds, when the step's context masks (its logger is a
    ``RedactingLogger``): what a remote plugin's server is asked to mask too."""
    # (the context's logger, if one was given: asking ``ctx.logger`` would make one)
    logger = getattr(ctx, "_logger", None)
    return logger.redactor.found_in(text) if isinstance(logger, RedactingLogger) else []
