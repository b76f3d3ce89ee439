"""Plugins that the integration tests serve with ``flowhost-plugin serve remote_plugins:X``
(plain classes: serving needs no entry point)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin, TransientError


class Deadline(Plugin):
    """Reports what the call's context says: the deadline, attempt and ids."""

    name = "deadline"
    version = "2.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        remaining: float | None
        attempt: int
        run_id: str
        step_id: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(remaining=ctx.time_remaining(), attempt=ctx.attempt,
                            run_id=ctx.run_id, step_id=ctx.step_id)


class DieOnce(Plugin):
    """Kills its own server in the middle of the first call (a marker file remembers it)."""

    name = "die-once"
    version = "1.0.0"

    class Inputs(BaseModel):
        marker: str

    class Outputs(BaseModel):
        survived: bool

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        marker = Path(inputs.marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(17)  # the server process dies with the call in flight
        return self.Outputs(survived=True)


class Big(Plugin):
    """Returns a text of the size asked for."""

    name = "big"
    version = "1.0.0"

    class Inputs(BaseModel):
        size: int
        padding: str = ""

    class Outputs(BaseModel):
        text: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(text="x" * inputs.size)


class Slow(Plugin):
    """Sleeps (async), then answers: for graceful stops and deadlines."""

    name = "slow"
    version = "1.0.0"

    class Inputs(BaseModel):
        seconds: float

    class Outputs(BaseModel):
        slept: float

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        await asyncio.sleep(inputs.seconds)
        return self.Outputs(slept=inputs.seconds)


class SyncBlock(Plugin):
    """A sync plugin that blocks its thread: the server's event loop must not notice."""

    name = "sync-block"
    version = "1.0.0"

    class Inputs(BaseModel):
        seconds: float

    class Outputs(BaseModel):
        thread: str
        main_thread: bool

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        time.sleep(inputs.seconds)
        current = threading.current_thread()
        return self.Outputs(thread=current.name,
                            main_thread=current is threading.main_thread())


class Hinted(Plugin):
    """A transient error with a non-ASCII hint and a retry-after."""

    name = "hinted"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        never: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        raise TransientError("the cache is warming up", hint="Wait — or start Rédis",
                             retry_after=0.25)
