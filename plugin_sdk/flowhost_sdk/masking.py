"""A plugin server's log with the host's secrets masked: the host names the secrets among a
call's inputs (``InvokeRequest.masked``), and what the plugin logs through ``ctx.logger`` —
and what the server logs about the call — holds ``***`` where they were."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

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
    """The step's logger (``flowhost.plugin.<step>``, configured as usual) with ``secrets``
    masked in each record's message and traceback."""

    def __init__(self, step_id: str, secrets: list[str]) -> None:
        super().__init__(f"flowhost.plugin.{step_id}")
        self.parent = logging.getLogger(f"flowhost.plugin.{step_id}")
        self._secrets = secrets

    def handle(self, record: logging.LogRecord) -> None:
        record.msg = mask(record.getMessage(), self._secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info),
                                   self._secrets)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask(record.stack_info, self._secrets)
        super().handle(record)

    def getEffectiveLevel(self) -> int:  # noqa: N802 - logging's name
        assert self.parent is not None
        return self.parent.getEffectiveLevel() if self.level == logging.NOTSET else self.level
