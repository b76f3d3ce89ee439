"""Errors about user input (spec files, flags, config) that the CLI turns into exit code 2.

A ``Problem`` says what is wrong, where (file, line, step, field) and what to do; a
``SpecError`` carries every problem found, so the user fixes them all in one go.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    step: str | None = None
    field: str | None = None
    fix: str | None = None
    column: int | None = None  # 1-based, shown only with a line

    def __str__(self) -> str:
        where = (self.file or "<spec>") + (f":{self.line}" if self.line is not None else "")
        if self.line is not None and self.column is not None:
            where += f":{self.column}"
        subject = ", ".join(
            part
            for part in (
                f"step {quote_name(self.step)}" if self.step is not None else "",
                f"field {quote_name(self.field)}" if self.field else "",
            )
            if part
        )
        text = f"{where}: {subject + ': ' if subject else ''}{clip(self.message)}"
        return f"{text} — {clip(self.fix)}" if self.fix else text


# Values longer than this are shown by their ends and their length: a 1 MB string given where
# a number was expected must not make a 1 MB message.
QUOTED_CHARS = 100
CLIPPED_CHARS = 2000  # a whole message, as a last resort for texts made elsewhere
_END_CHARS = 20


def quote(value: Any) -> str:
    """``repr(value)``, or for a long value ``'aaaa…aaaa' (1,000,000 characters)``."""
    if isinstance(value, str):
        return repr(value) if len(value) <= QUOTED_CHARS else _ends(value)
    text = _repr(value)
    if len(text) <= QUOTED_CHARS:
        return text
    return f"{text[:_END_CHARS]}…{text[-_END_CHARS:]} ({len(text):,} characters)"


def quote_name(text: str) -> str:
    """``'text'`` as messages quote names and ids, or its ends and length when it is long."""
    return f"'{text}'" if len(text) <= QUOTED_CHARS else _ends(text)


def shorten(text: str) -> str:
    """``text`` as it is, or its ends and length when it is long."""
    return text if len(text) <= QUOTED_CHARS else _ends(text)


def _ends(text: str) -> str:
    return (f"{repr(text[:_END_CHARS])[:-1]}…{repr(text[-_END_CHARS:])[1:]} "
            f"({len(text):,} characters)")


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except ValueError:  # an int beyond Python's digits limit for str()
        return f"<a number of about {int(value.bit_length() * 0.30103):,} digits>"


def requote(text: str, value: Any) -> str:
    """A message made elsewhere (jsonschema's) that shows ``value`` as its repr, with a long
    value shortened as ``quote`` shows it."""
    written = _repr(value)
    if len(written) > QUOTED_CHARS:
        text = text.replace(written, quote(value))
    return clip(text)


def clip(text: str, limit: int = CLIPPED_CHARS) -> str:
    """``text``, or its start and end with how much was left out between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}… ({len(text) - 2 * half:,} characters left out) …{text[-half:]}"


SHOWN_PROBLEMS = 30  # a spec generated wrong can have thousands; the first ones tell the story


class UserInputError(Exception):
    """Bad input from the user; the message is meant to be shown as is."""


class StorageError(Exception):
    """The state store failed (disk full, locked past the timeout, read-only, corrupt): not
    bad input (the CLI exits 1, not 2). The message says what happened and what to do;
    what was committed before it stays committed."""


class SpecError(UserInputError):
    def __init__(self, problems: Iterable[Problem], *, partial: Any = None,
                 known_ids: frozenset[str] = frozenset()) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file or "", p.line or 0, p.message))
        self.partial = partial  # the valid part of the spec, when there is one
        self.known_ids = known_ids  # every step id, the malformed steps' too
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the workflow spec:"
        shown = [f"  {p}" for p in self.problems[:SHOWN_PROBLEMS]]
        if count > SHOWN_PROBLEMS:
            shown.append(f"  … and {count - SHOWN_PROBLEMS} more like these")
        return head + "\n" + "\n".join(shown)


def is_utf8(text: str) -> bool:
    """False for a text holding lone surrogates: how Python decodes bytes of a command-line
    argument (or environment variable) that are not UTF-8, e.g. ``\\udce9`` for ``\\xe9``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def as_bytes(text: str) -> str:
    """A text that is not UTF-8 as it was given, its foreign bytes escaped: ``caf\\xe9``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (\\ud800)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` suggestion, or None when nothing is close."""
    if len(word) > QUOTED_CHARS:  # not a typo; and difflib is quadratic in the length
        return None
    short = [candidate for candidate in candidates if len(candidate) <= QUOTED_CHARS]
    close = difflib.get_close_matches(word, short, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
