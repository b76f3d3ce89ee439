"""Plugins for the InvokeStream and attempt-numbering tests, served with
``flowhost-plugin serve stream_plugins:X``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin, TransientError


class Halfway(Plugin):
    """Reports being half way (from its worker thread), then answers."""

    name = "halfway"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        done: bool

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        ctx.progress(0.5, "halfway there")
        return self.Outputs(done=True)


class Gated(Plugin):
    """Reports that it waits, waits for a file to appear, reports again and answers: a
    caller that sees the first report before creating the file proves it came while the
    call was still running."""

    name = "gated"
    version = "1.0.0"

    class Inputs(BaseModel):
        gate: str

    class Outputs(BaseModel):
        passed: bool

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        ctx.progress(0.25, "waiting at the gate")
        gate = Path(inputs.gate)
        while not gate.exists():
            if ctx.time_remaining() == 0.0:
                raise TransientError("the gate never opened")
            await asyncio.sleep(0.02)
        ctx.progress(1.0, "through the gate")
        return self.Outputs(passed=True)


class Attempts(Plugin):
    """Fails (transient) until its own attempt number reaches ``succeed_at`` and the step's
    reaches ``step_attempt``; reports the numbers its context carried."""

    name = "attempts"
    version = "1.0.0"

    class Inputs(BaseModel):
        succeed_at: int = 1
        step_attempt: int = 1

    class Outputs(BaseModel):
        attempt: int
        plugin_attempt: int

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        if ctx.plugin_attempt < inputs.succeed_at or ctx.attempt < inputs.step_attempt:
            raise TransientError(f"not yet (attempt {ctx.attempt}, plugin attempt "
                                 f"{ctx.plugin_attempt})")
        return self.Outputs(attempt=ctx.attempt, plugin_attempt=ctx.plugin_attempt)


class Down(Plugin):
    """Always fails with a transient error."""

    name = "down"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        attempt: int
        plugin_attempt: int

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        raise TransientError(f"down (attempt {ctx.attempt}, plugin attempt "
                             f"{ctx.plugin_attempt})")
