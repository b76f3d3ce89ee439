"""Plugins that behave: no-ops, echoes, sleepers, a file writer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


class Noop(Plugin):
    """Does nothing, fast: for scheduling and overhead tests."""

    name = "noop"
    version = "1.0.0"
    idempotent = True

    class Inputs(BaseModel):
        value: int = 0

    class Outputs(BaseModel):
        value: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(value=inputs.value + 1)


class Echo(Plugin):
    """Returns its input text, and whatever extra data it got."""

    name = "echo"
    version = "1.2.0"

    class Inputs(BaseModel):
        text: str
        data: dict[str, object] = {}
        tags: list[str] = []

    class Outputs(BaseModel):
        text: str
        length: int
        data: dict[str, object]
        tags: list[str]

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        ctx.progress(0.5, "echoing")
        return self.Outputs(text=inputs.text, length=len(inputs.text), data=inputs.data,
                            tags=inputs.tags)


class SyncEcho(Plugin):
    """A sync plugin: must run off the event loop."""

    name = "sync-echo"
    version = "1.0.0"

    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str
        thread: str

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        import threading

        ctx.progress(1.0, "done")
        return self.Outputs(text=inputs.text, thread=threading.current_thread().name)


class Numbers(Plugin):
    """Takes and returns typed values, for static type checks of references."""

    name = "numbers"
    version = "1.0.0"

    class Inputs(BaseModel):
        count: int
        ratio: float = 1.0
        flag: bool = False

    class Outputs(BaseModel):
        count: int
        label: str
        items: list[int]

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(count=inputs.count, label=f"n{inputs.count}",
                            items=list(range(inputs.count)))


class Sleeper(Plugin):
    """Sleeps asynchronously, reporting progress."""

    name = "sleeper"
    version = "1.0.0"

    class Inputs(BaseModel):
        seconds: float
        label: str = ""

    class Outputs(BaseModel):
        slept: float
        label: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        steps = 4
        for i in range(steps):
            await asyncio.sleep(inputs.seconds / steps)
            ctx.progress((i + 1) / steps, f"slept {i + 1}/{steps}")
        return self.Outputs(slept=inputs.seconds, label=inputs.label)


class SyncSleeper(Plugin):
    """Sleeps in a thread, polling ctx.cancelled like a well-behaved sync plugin."""

    name = "sync-sleeper"
    version = "1.0.0"

    class Inputs(BaseModel):
        seconds: float

    class Outputs(BaseModel):
        slept: float

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        end = time.monotonic() + inputs.seconds
        while time.monotonic() < end and not ctx.cancelled:
            time.sleep(0.01)
        return self.Outputs(slept=inputs.seconds)


class FileWriter(Plugin):
    """Writes a file and returns its path, for validation checks."""

    name = "file-writer"
    version = "1.0.0"

    class Inputs(BaseModel):
        directory: str
        filename: str = "out.py"
        content: str = "x = 1\n"
        secret: str = ""

    class Outputs(BaseModel):
        path: str
        directory: str

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        folder = Path(ctx.workdir, inputs.directory)  # a relative one is in the run's workdir
        target = folder / inputs.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(inputs.content, encoding="utf-8")
        if inputs.secret:
            (folder / "secret.txt").write_text(inputs.secret, encoding="utf-8")
        return self.Outputs(path=str(target), directory=inputs.directory)
