"""The logger a plugin gets as ``ctx.logger`` in a run with secrets: its records are masked
before any handler sees them, so a plugin that logs a secret it was given does not print it.

It is a plain ``logging.Logger`` outside the logging manager's registry (one per attempt, so
none accumulate in a long-running process), whose parent is ``flowhost.plugin.<step>``:
records reach the same handlers as those of the SDK's default logger.
"""

from __future__ import annotations

import logging

from flowhost.redact import Redactor
from flowhost_sdk import InvocationContext


class RedactingLogger(logging.Logger):
    def __init__(self, step_id: str, redactor: Redactor) -> None:
        super().__init__(f"flowhost.plugin.{step_id}")
        self.parent = logging.getLogger(f"flowhost.plugin.{step_id}")
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def handle(self, record: logging.LogRecord) -> None:
        mask = self._redactor.text
        record.msg = mask(record.getMessage())
        record.args = None
        if record.exc_info:
            # The traceback text is formatted once and cached on the record: mask that.
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        super().handle(record)

    def getEffectiveLevel(self) -> int:  # noqa: N802 - logging's name
        # The level configured for the step's (or any parent's) logger applies.
        assert self.parent is not None
        return self.parent.getEffectiveLevel() if self.level == logging.NOTSET else self.level


def secrets_for(ctx: InvocationContext, text: str) -> list[str]:
    """The run's secrets ``text`` holds, when the step's context masks (its logger is a
    ``RedactingLogger``): what a remote plugin's server is asked to mask too."""
    # (the context's logger, if one was given: asking ``ctx.logger`` would make one)
    logger = getattr(ctx, "_logger", None)
    return logger.redactor.found_in(text) if isinstance(logger, RedactingLogger) else []
