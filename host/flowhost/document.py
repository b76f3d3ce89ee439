"""A spec's data and the line of each of its values.

Pydantic validation errors and reference errors carry a path such as
``("steps", 2, "inputs", "project_path")``; ``Document.line_of`` turns it into the line the
user should look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PathKey = tuple[str | int, ...]


class Document:
    """The data of a spec file, and the line of each value (``lines``, by path).

    The lines are only needed for messages: a document read the fast way (``text`` given,
    ``lines`` not) finds them by reading its text again the slow way, the first time they
    are asked for."""

    __slots__ = ("_lines", "_text", "data", "file", "overridden")

    def __init__(self, file: str, data: Any, lines: dict[PathKey, int] | None = None,
                 overridden: dict[PathKey, str] | None = None, *,
                 text: str | None = None) -> None:
        self.file = file
        self.data = data
        self._lines = lines if lines is not None else None if text is not None else {}
        self._text = text
        self.overridden: dict[PathKey, str] = {} if overridden is None else overridden

    def __repr__(self) -> str:
        return f"Document(file={self.file!r}, data={self.data!r})"

    def __eq__(self, other: object) -> bool:  # as the dataclass it was compared
        if not isinstance(other, Document):
            return NotImplemented
        return (self.file, self.data, self.lines, self.overridden) == (
            other.file, other.data, other.lines, other.overridden)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    @property
    def lines(self) -> dict[PathKey, int]:
        if self._lines is None:
            self._lines = _find_lines(self._text or "", self.file)
        return self._lines

    def set_by(self, path: Sequence[str | int]) -> str | None:
        """The ``--set`` that gave the value at (or in, or around) an input ``path``."""
        key = tuple(path)
        if len(key) < 4:  # ("steps", i, "inputs", name) at least: not a whole step
            return None
        for where, override in self.overridden.items():
            if where[:len(key)] == key or key[:len(where)] == where:
                return override
        return None

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        lines = self.lines
        key = tuple(path)
        while key:
            line = lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return lines.get(())


def _find_lines(text: str, file: str) -> dict[PathKey, int]:
    # (read again the slow way, which knows lines: only for a message, so imported late)
    from flowhost.source import lines_of

    return lines_of(text, file)
