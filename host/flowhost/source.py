"""Read a YAML or JSON spec into a ``Document``: plain Python data, and each value's line
for messages. The common subset is read the fast way (``flowhost.fast_read``); anything
else, and a message's lines, the slow way (``flowhost.yaml_slow``).
"""

from __future__ import annotations

import contextlib
import errno
import gc
from collections.abc import Iterator
from pathlib import Path

from flowhost.document import Document, PathKey
from flowhost.fast_read import fast_json, fast_yaml
from flowhost.problems import Problem, SpecError, shorten
from flowhost.yaml_common import SLOW
from flowhost.yaml_slow import read_slowly

__all__ = ["MAX_SPEC_CHARS", "Document", "PathKey", "lines_of", "load_document",
           "parse_document", "paused_gc"]


MAX_SPEC_CHARS = 16 * 1024 * 1024  # /dev/zero, or a log given by mistake, must not fill memory


def load_document(path: str | Path) -> Document:
    file = str(path)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(MAX_SPEC_CHARS + 1)
    except FileNotFoundError:
        raise SpecError([Problem("file not found", file=file)]) from None
    except IsADirectoryError:
        raise SpecError([Problem("is a directory, not a workflow file", file=file)]) from None
    except OSError as exc:  # its text without the path again: the problem names the file
        if exc.errno == errno.ENAMETOOLONG:
            file = shorten(file)
        why = exc.strerror or str(exc)
        raise SpecError([Problem(f"cannot read the file: {why}", file=file)]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(f"cannot read the file: {exc}", file=file)]) from None
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError([Problem(f"larger than {MAX_SPEC_CHARS:,} characters: not a workflow "
                                 "spec flowhost reads", file=file)])
    return parse_document(text, file)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC paused meanwhile (as it was, after). Reading and checking a spec
    allocates many small objects that all stay alive: the collections would scan them again
    and again, which makes planning grow faster than the spec."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def parse_document(text: str, file: str = "<spec>") -> Document:
    with paused_gc():
        data = fast_json(text) if file.lower().endswith(".json") else fast_yaml(text)
        if data is not SLOW:
            return Document(file=file, data=data, text=text)
        return read_slowly(text, file)


def lines_of(text: str, file: str) -> dict[PathKey, int]:
    """The lines of a document that the fast path read: the slow path's, which would find no
    problem (or the fast path would not have read it); {} if it finds one all the same."""
    with paused_gc():
        try:
            return read_slowly(text, file).lines
        except SpecError:  # pragma: no cover - the fast path gives way on any problem
            return {}
