"""A plugin for the replica tests: it says which server process answered (``pid``), so a
test can count how the calls of one remote plugin spread over the servers behind it."""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


class WhoAmI(Plugin):
    """Answers with the pid of the process serving it, after ``seconds`` (on the event loop:
    many calls at once cost no threads). Not idempotent, so no call is served from a cache."""

    name = "whoami"
    version = "1.0.0"
    description = "Says which server process answered the call"

    class Inputs(BaseModel):
        seconds: float = 0.0

    class Outputs(BaseModel):
        pid: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        if inputs.seconds:
            await asyncio.sleep(inputs.seconds)
        return self.Outputs(pid=os.getpid())
