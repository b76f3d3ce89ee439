"""Replace secret values with ``***`` in everything flowhost prints, stores or exports."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from typing import Any

MASK = "***"


def _forms(secret: str) -> set[str]:
    """The secret as it may appear in text flowhost did not write itself: JSON-escaped,
    Python's repr (pydantic errors), shell-quoted, or with its whitespace squashed."""
    if not secret:
        return set()
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], shlex.quote(secret), " ".join(secret.split())}
    return {form for form in forms if form.strip()}


class Redactor:
    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({form for s in secrets for form in _forms(s)}, key=len,
                               reverse=True)

    def add(self, secret: str) -> None:
        forms = [form for form in _forms(secret) if form not in self._secrets]
        if forms:
            self._secrets += forms
            self._secrets.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def data(self, value: Any) -> Any:
        """A deep copy of JSON-like ``value`` with every secret masked (same object if none)."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value
