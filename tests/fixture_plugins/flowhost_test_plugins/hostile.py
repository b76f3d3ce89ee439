"""Plugins that break the rules a plugin should keep: they raise what no plugin should
(``BaseException``, ``KeyboardInterrupt``, ``SystemExit``, their own ``CancelledError``),
return text that is not valid Unicode, or log a secret. The host must stay correct."""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin, TransientError

Raised = Literal["base", "cancelled", "keyboard", "system-exit", "retry-forever", "recursion"]


def _raise(what: Raised) -> None:
    if what == "base":
        raise BaseException("a bare BaseException from the plugin")
    if what == "cancelled":
        raise asyncio.CancelledError("the plugin cancelled itself")
    if what == "keyboard":
        raise KeyboardInterrupt("the plugin raised KeyboardInterrupt")
    if what == "system-exit":
        raise SystemExit(3)
    if what == "recursion":
        raise RecursionError("maximum recursion depth exceeded in the plugin")
    raise TransientError("try again much later", retry_after=1e308)


class Raiser(Plugin):
    """Raises what it is told to, from a coroutine or (``sync: true``) from a thread."""

    name = "raiser"
    version = "1.0.0"

    class Inputs(BaseModel):
        what: Raised = "base"
        sync: bool = False

    class Outputs(BaseModel):
        never: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        if inputs.sync:
            await asyncio.to_thread(_raise, inputs.what)
        _raise(inputs.what)
        raise AssertionError("unreachable")


class Undecodable(Plugin):
    """Returns a file name as ``os.listdir`` gives it on a non-UTF-8 file system: with a
    lone surrogate standing for the byte that is not UTF-8."""

    name = "undecodable"
    version = "1.0.0"

    class Inputs(BaseModel):
        nested: bool = False

    class Outputs(BaseModel):
        name: str
        names: list[str] = []

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        bad = os.fsdecode(b"caf\xe9")  # 'caf\udce9'
        if inputs.nested:
            return self.Outputs(name="fine", names=["ok", bad])
        return self.Outputs(name=bad)


class Chatty(Plugin):
    """Logs what it is given, a secret among it, through ``ctx.logger``."""

    name = "chatty"
    version = "1.0.0"

    class Inputs(BaseModel):
        token: str

    class Outputs(BaseModel):
        ok: bool

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        ctx.logger.warning("token is %s", inputs.token)
        ctx.logger.error("the token again: " + inputs.token)
        return self.Outputs(ok=True)
