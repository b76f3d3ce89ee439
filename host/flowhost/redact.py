"""Replace secret values with ``***`` in everything flowhost prints, stores or exports."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from typing import Any

MASK = "***"
# A piece of a secret this long or longer is masked too: a shell splits a value at `&` or
# `;`, a terminal wraps it, an error message quotes only part of it. Shorter pieces (a
# word such as "secret" inside "AAAsecret1") are too likely to be ordinary text.
MIN_FRAGMENT = 8


def _forms(secret: str) -> set[str]:
    """The secret as it may appear in text flowhost did not write itself: JSON-escaped,
    Python's repr (pydantic errors), shell-quoted, or with its whitespace squashed."""
    if not secret:
        return set()
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], shlex.quote(secret), " ".join(secret.split())}
    return {form for form in forms if form.strip()}


class Redactor:
    __slots__ = ("_grams", "_raw", "_secrets", "_values")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = [s for s in secrets if s]
        self._values = list(dict.fromkeys(values))
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({form for s in values for form in _forms(s)}, key=len,
                               reverse=True)
        self._raw: list[str] = []
        self._grams: set[str] = set()
        for value in values:
            self._add_fragments(value)

    def add(self, secret: str) -> None:
        if secret and secret not in self._values:
            self._values.append(secret)
        forms = [form for form in _forms(secret) if form not in self._secrets]
        if forms:
            self._secrets += forms
            self._secrets.sort(key=len, reverse=True)
        self._add_fragments(secret)

    def _add_fragments(self, secret: str) -> None:
        if len(secret) <= MIN_FRAGMENT or secret in self._raw:
            return  # a short secret is masked only whole
        self._raw.append(secret)
        self._grams.update(secret[i:i + MIN_FRAGMENT]
                           for i in range(len(secret) - MIN_FRAGMENT + 1))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def found_in(self, text: str) -> list[str]:
        """The secrets ``text`` holds (in any of the forms masked), as they are."""
        return [value for value in self._values
                if any(form in text for form in _forms(value))]

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if self._grams and len(value) >= MIN_FRAGMENT:
            value = self._fragments(value)
        return value

    def _fragments(self, value: str) -> str:
        """``value`` with every run of ``MIN_FRAGMENT`` or more characters that is a piece
        of a secret masked: found by the secrets' ``MIN_FRAGMENT``-grams, then extended as
        far as the text goes on like one of them."""
        grams, size = self._grams, MIN_FRAGMENT
        parts: list[str] = []
        start = i = 0
        end = len(value) - size
        while i <= end:
            if value[i:i + size] not in grams:
                i += 1
                continue
            j = i + size
            while j < len(value) and any(value[i:j + 1] in raw for raw in self._raw):
                j += 1
            parts += [value[start:i], MASK]
            start = i = j
        if not parts:
            return value
        parts.append(value[start:])
        return "".join(parts)

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


def holds_secret(value: Any, secrets: Iterable[str]) -> bool:
    """Whether JSON-like ``value`` holds one of ``secrets`` (or a piece of one that would be
    masked) in any of its strings or keys. Looked for in the values themselves: in their JSON
    text, escaping (``\\"``, ``\\\\``, ``\\u00f1``) would hide a secret that has such characters."""
    redactor = Redactor(secrets)
    return bool(redactor) and redactor.data(value) != value
