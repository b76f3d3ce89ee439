"""Plugins that take their whole process down, for the daemon's tests: in a worker they must
cost only their own run. Each counts its calls in a file, so it can crash the first
``times`` calls and succeed after (a run retried on a new worker then finishes)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


def _count(path: str) -> int:
    """Record one more call; how many there were before it."""
    file = Path(path)
    before = len(file.read_text().splitlines()) if file.exists() else 0
    with file.open("a", encoding="utf-8") as out:
        out.write(f"{os.getpid()}\n")
    return before


class ProcessKiller(Plugin):
    """Ends its process (``sys.exit``, ``os._exit`` or SIGSEGV) on the first ``times`` calls."""

    name = "process-killer"
    version = "1.0.0"

    class Inputs(BaseModel):
        calls: str
        how: Literal["sys.exit", "os._exit", "segfault"] = "os._exit"
        times: int = 1_000_000

    class Outputs(BaseModel):
        survived: int

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        before = _count(inputs.calls)
        if before < inputs.times:
            if inputs.how == "sys.exit":
                sys.exit(3)
            if inputs.how == "os._exit":
                os._exit(7)
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.Outputs(survived=before)


class Gate(Plugin):
    """Writes ``started`` (its pid) once it runs, then waits until ``release`` exists (or
    ``seconds`` pass): a test decides when the step ends, and knows when it began."""

    name = "gate"
    version = "1.0.0"

    class Inputs(BaseModel):
        started: str
        release: str
        seconds: float = 60.0
        value: int = 0

    class Outputs(BaseModel):
        value: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        Path(inputs.started).write_text(f"{os.getpid()}\n", encoding="utf-8")
        waited = 0.0
        while not Path(inputs.release).exists() and waited < inputs.seconds:
            await asyncio.sleep(0.02)
            waited += 0.02
        return self.Outputs(value=inputs.value + 1)
