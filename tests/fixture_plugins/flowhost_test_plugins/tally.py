"""A plugin for the kill loops: every execution leaves ``begin LABEL PID`` in
``tally.txt`` of the run's working directory once it runs and ``end LABEL PID`` once it is
done, so a test can count how often each step ran, whichever process ran it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin

TALLY = "tally.txt"


def tally(ctx: InvocationContext, what: str, label: str) -> None:
    """One line, in one ``write`` of a file opened for appending: lines of processes and
    threads that write at once never mix, and a SIGKILL leaves whole lines."""
    line = f"{what} {label} {os.getpid()}\n".encode()
    fd = os.open(Path(ctx.workdir, TALLY), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Tally(Plugin):
    """Counts itself, sleeps ``seconds`` (in a thread with ``sync``), returns ``value + 1``.
    Not idempotent: it is never cached, every execution is a real one."""

    name = "tally"
    version = "1.0.0"

    class Inputs(BaseModel):
        label: str
        seconds: float = 0.0
        value: int = 0
        sync: bool = False

    class Outputs(BaseModel):
        label: str
        value: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        tally(ctx, "begin", inputs.label)
        if inputs.sync:
            await asyncio.to_thread(time.sleep, inputs.seconds)
        elif inputs.seconds:
            await asyncio.sleep(inputs.seconds)
        tally(ctx, "end", inputs.label)
        return self.Outputs(label=inputs.label, value=inputs.value + 1)
