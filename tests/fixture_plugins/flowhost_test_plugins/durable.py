"""Plugins for the durable-run tests: they leave a trace of every call, so a test can tell
which steps ran again after an interruption."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


class Journal(Plugin):
    """Appends ``begin LABEL PID`` to a journal file once it runs (after its first await),
    sleeps, then appends ``end LABEL PID``: a trace of every call, and of every completed one.

    Not idempotent (it has a side effect), so it is never cached unless a spec says so.
    """

    name = "journal"
    version = "1.0.0"

    class Inputs(BaseModel):
        journal: str
        label: str
        seconds: float = 0.0
        value: int = 0

    class Outputs(BaseModel):
        label: str
        value: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        journal = Path(inputs.journal)
        await asyncio.sleep(0)
        with journal.open("a", encoding="utf-8") as out:
            out.write(f"begin {inputs.label} {os.getpid()}\n")
        if inputs.seconds:
            await asyncio.sleep(inputs.seconds)
        with journal.open("a", encoding="utf-8") as out:
            out.write(f"end {inputs.label} {os.getpid()}\n")
        return self.Outputs(label=inputs.label, value=inputs.value + 1)


class Counter(Plugin):
    """Idempotent: counts its calls in a file, for cache tests. ``token`` is taken and not
    returned (a secret goes there); ``directory`` is created and returned."""

    name = "counter"
    version = "1.0.0"
    idempotent = True

    class Inputs(BaseModel):
        calls: str
        text: str = ""
        directory: str = ""
        token: str = ""

    class Outputs(BaseModel):
        text: str
        directory: str

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        with Path(inputs.calls).open("a", encoding="utf-8") as calls:
            calls.write(f"{inputs.text}\n")
        if inputs.directory:
            Path(inputs.directory).mkdir(parents=True, exist_ok=True)
        return self.Outputs(text=inputs.text, directory=inputs.directory)
