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
                f"step '{self.step}'" if self.step is not None else "",
                f"field '{self.field}'" if self.field else "",
            )
            if part
        )
        text = f"{where}: {subject + ': ' if subject else ''}{self.message}"
        return f"{text} — {self.fix}" if self.fix else text


SHOWN_PROBLEMS = 30  # a spec generated wrong can have thousands; the first ones tell the story


class UserInputError(Exception):
    """Bad input from the user; the message is meant to be shown as is."""


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


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean 'x'?`` suggestion, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
