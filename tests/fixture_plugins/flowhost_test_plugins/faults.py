"""Plugins that fail the way real ones do in production: they hang (heeding cancellation
or not), return tens of megabytes or what is not their outputs at all, or flood stdout and
stderr. The host must end each as its recovery ladder says and stay stoppable."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


def _mark(path: str) -> None:
    """One line per attempt in ``path`` (when given): a test knows it runs, and how often."""
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")


class HangInputs(BaseModel):
    started: str = ""
    polite: bool = False  # a blocked thread polls ctx.cancelled
    seconds: float = 600.0


class HangOutputs(BaseModel):
    woke: bool


def _block(inputs: HangInputs, ctx: InvocationContext) -> HangOutputs:
    stop = threading.Event()
    waited = 0.0
    while waited < inputs.seconds and not (inputs.polite and ctx.cancelled):
        stop.wait(0.05)
        waited += 0.05
    return HangOutputs(woke=True)


class Hang(Plugin):
    """Never answers: awaits forever, or (``thread``) awaits a thread of its own
    (``asyncio.to_thread``) that blocks. Bounded by ``seconds`` so a test that loses track of
    it leaves nothing behind for long."""

    name = "hang"
    version = "1.0.0"

    class Inputs(HangInputs):
        thread: bool = False

    Outputs = HangOutputs

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> HangOutputs:
        _mark(inputs.started)
        if inputs.thread:
            return await asyncio.to_thread(_block, inputs, ctx)
        await asyncio.sleep(inputs.seconds)
        return HangOutputs(woke=True)


class SyncHang(Plugin):
    """A sync plugin that blocks the host's thread it runs on."""

    name = "sync-hang"
    version = "1.0.0"
    Inputs = HangInputs
    Outputs = HangOutputs

    def invoke(self, inputs: HangInputs, ctx: InvocationContext) -> HangOutputs:
        _mark(inputs.started)
        return _block(inputs, ctx)


class Huge(Plugin):
    """Returns a text of ``megabytes`` MB."""

    name = "huge"
    version = "1.0.0"

    class Inputs(BaseModel):
        megabytes: float = 50.0

    class Outputs(BaseModel):
        text: str

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(text="x" * int(inputs.megabytes * 1_000_000))


Malformation = Literal["none", "list", "text", "wrong-type", "nan", "object", "deep"]


def _malformed(what: Malformation) -> Any:
    if what == "none":
        return None
    if what == "list":
        return [1, 2, 3]
    if what == "text":
        return "not outputs at all"
    if what == "wrong-type":
        return {"value": "many"}
    if what == "nan":
        return {"value": math.nan}
    if what == "object":
        return {"value": object()}
    deep: Any = 1.0
    for _ in range(100_000):
        deep = [deep]
    return {"value": deep}


class Malformed(Plugin):
    """Returns what is not its outputs: no dict, a wrong type, NaN, an object, deep nesting."""

    name = "malformed"
    version = "1.0.0"

    class Inputs(BaseModel):
        what: Malformation = "none"

    class Outputs(BaseModel):
        value: float

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Any:
        return _malformed(inputs.what)


class Flood(Plugin):
    """Writes ``megabytes`` MB to stdout, stderr (both with ``stream: both``) or its logger,
    through Python's streams or (``raw``) straight to the descriptors, then answers."""

    name = "flood"
    version = "1.0.0"

    class Inputs(BaseModel):
        megabytes: float = 20.0
        stream: Literal["stdout", "stderr", "both", "logger"] = "both"
        raw: bool = False

    class Outputs(BaseModel):
        written: int

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        line = "flood " * 16 + "\n"
        lines = int(inputs.megabytes * 1_000_000) // len(line)
        chunk = line * 1000
        streams = {"stdout": [1], "stderr": [2], "both": [1, 2], "logger": []}[inputs.stream]
        for _ in range(max(lines // 1000, 1)):
            if not streams:
                ctx.logger.warning(chunk)
            for fd in streams:
                if inputs.raw:
                    os.write(fd, chunk.encode())
                else:
                    (sys.stdout if fd == 1 else sys.stderr).write(chunk)
        return self.Outputs(written=lines * len(line))
