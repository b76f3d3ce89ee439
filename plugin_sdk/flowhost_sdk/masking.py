"""A plugin server's log with the host's secrets masked: the host names the secrets among a
call's inputs (``InvokeRequest.masked``), and what the plugin logs through ``ctx.logger`` —
and what the server logs about the call — holds ``***`` where they were."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

MASK = "***"


def forms(values: Iterable[str]) -> list[str]:
    """The values as a log could hold them (as is, JSON-escaped, in a repr), longest first."""
    found = {form for value in values if value
             for form in (value, json.dumps(value)[1:-1], repr(value)[1:-1]) if form}
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class MaskingLogger(logging.Logger):
    """The step's logger with ``mask`` applied to each record's message and traceback before
    any handler sees it. A plain ``logging.Logger`` outside the logging manager's registry
    (one per call, so none accumulate in a long-running process), whose parent is
    ``flowhost.plugin.<step>``: records reach the handlers configured for the step."""

    def __init__(self, step_id: str, mask: Callable[[str], str]) -> None:
        super().__init__(f"flowhost.plugin.{step_id}")
        self.parent = logging.getLogger(f"flowhost.plugin.{step_id}")
        self._mask = mask

    def handle(self, record: logging.LogRecord) -> None:
        mask = self._mask
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
