"""The process's stdout and stderr with a run's secrets masked, while it runs.

A local plugin runs in flowhost's process: what it ``print``s goes to flowhost's own streams,
past the masking that its outputs, errors, progress and ``ctx.logger`` get. While a run
with secrets goes on, ``sys.stdout`` and ``sys.stderr`` are wrapped so that text written
through them is masked too (the progress view writes through the same wrapper: a live view
redirects prints into its console, and the console writes here). Bytes a plugin writes to
file descriptor 1 or 2 itself bypass Python's streams and are not masked.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO


class MaskedStream:
    """``stream`` with ``mask`` applied to every text written to it."""

    def __init__(self, stream: TextIO, mask: Callable[[str], str]) -> None:
        self._stream = stream
        self._mask = mask

    def write(self, text: str) -> int:
        self._stream.write(self._mask(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def masked_std_streams(mask: Callable[[str], str] | None) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` masked meanwhile (nothing changes without a mask:
    a run without secrets writes as fast as ever)."""
    if mask is None:
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout = MaskedStream(saved[0], mask)
    sys.stderr = MaskedStream(saved[1], mask)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
