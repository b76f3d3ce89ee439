"""A plugin's own traceback: what its author needs to find the bug (the file and line of the
raise), without the host's frames around the call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import traceback
from pathlib import Path

import flowhost
import flowhost_sdk

# Frames of flowhost itself and of the machinery between it and a plugin (the event loop,
# the SDK's thread pool a sync plugin runs in) are not the plugin author's.
_NOT_THEIRS = tuple(str(Path(module.__file__ or "").resolve().parent) + "/" for module in (
    flowhost, flowhost_sdk, asyncio, concurrent.futures))
_MAX_FRAMES = 30
_MAX_CHARS = 16_000
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>.+)$',
                    re.MULTILINE)


def plugin_traceback(exc: BaseException) -> str | None:
    """The traceback of ``exc`` from the plugin's frames on, or None when it has none (an
    error raised by flowhost itself)."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not str(Path(frame.filename).resolve()).startswith(_NOT_THEIRS)]
    if not frames:
        return None
    shown = traceback.StackSummary.from_list(frames[-_MAX_FRAMES:])
    text = "".join(["Traceback (most recent call last):\n", *shown.format(),
                    *traceback.format_exception_only(type(exc), exc)]).rstrip()
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS - 1] + "…"


def raised_at(text: str) -> str | None:
    """Where a traceback's exception was raised: "file.py:42 in invoke"."""
    frames = list(_FRAME.finditer(text))
    if not frames:
        return None
    last = frames[-1]
    return f"{Path(last['file']).name}:{last['line']} in {last['name']}"
