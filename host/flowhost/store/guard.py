"""The store's last line of defence against a secret in clear: the engine masks its events,
but a secret's value written in clear in a spec can come back (in a plugin's hint, say).
Each journal writer, SQLite's and PostgreSQL's, passes every payload through here."""

from __future__ import annotations

import json
from collections.abc import Iterable

from flowhost.redact import Redactor
from flowhost.store import codec


class SecretGuard:
    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({secret for secret in secrets if secret})
        self.redactor = Redactor(values)
        # what a secret looks like in a JSON payload: as is, and JSON-escaped
        self._needles = tuple({form for secret in values
                               for form in (secret, json.dumps(secret)[1:-1])})

    def __bool__(self) -> bool:
        """Whether there is any secret to look for (a writer skips the call without)."""
        return bool(self._needles)

    def payload(self, payload: str) -> str:
        """``payload`` (an event's JSON) with the secrets masked; itself when it holds none
        (the common case: one substring test per secret)."""
        if self._needles and any(needle in payload for needle in self._needles):
            return codec.dumps(self.redactor.data(json.loads(payload)))
        return payload
