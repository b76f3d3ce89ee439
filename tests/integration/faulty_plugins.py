"""Plugins that misbehave in ways a server must survive, served by
``tests/integration/test_server_faults.py`` with ``flowhost-plugin serve faulty_plugins:X``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pydantic import BaseModel

from flowhost_sdk import InvocationContext, Plugin


class Escape(BaseException):
    """Neither an Exception nor one of the interpreter's own: nothing catches it by accident."""


# Only what a plugin might really raise; the test names them by key.
RAISABLE: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "BaseException": BaseException,
    "Escape": Escape,
    "CancelledError": asyncio.CancelledError,
}


class RaiseInputs(BaseModel):
    throw: str = ""  # a key of RAISABLE; empty: answer normally
    message: str = "raised by the plugin"


class RaiseOutputs(BaseModel):
    ok: bool


def _raise(inputs: RaiseInputs) -> RaiseOutputs:
    if inputs.throw:
        raise RAISABLE[inputs.throw](inputs.message)
    return RaiseOutputs(ok=True)


class SyncRaiser(Plugin):
    """A sync plugin (run on the server's threads) raising what it is told to."""

    name = "sync-raiser"
    version = "1.0.0"
    Inputs = RaiseInputs
    Outputs = RaiseOutputs

    def invoke(self, inputs: RaiseInputs, ctx: InvocationContext) -> RaiseOutputs:
        return _raise(inputs)


class AsyncRaiser(Plugin):
    """An async plugin (run on the server's event loop) raising what it is told to."""

    name = "async-raiser"
    version = "1.0.0"
    Inputs = RaiseInputs
    Outputs = RaiseOutputs

    async def invoke(self, inputs: RaiseInputs, ctx: InvocationContext) -> RaiseOutputs:
        await asyncio.sleep(0)
        return _raise(inputs)


class ListingInputs(BaseModel):
    bad: bool = True


class ListingOutputs(BaseModel):
    folder: str
    files: list[str]


class Listing(Plugin):
    """Returns a file name as ``os.listdir`` gives it for bytes that are not UTF-8."""

    name = "listing"
    version = "1.0.0"
    Inputs = ListingInputs
    Outputs = ListingOutputs

    def invoke(self, inputs: ListingInputs, ctx: InvocationContext) -> ListingOutputs:
        name = b"caf\xe9".decode("utf-8", "surrogateescape") if inputs.bad else "cafe"
        return ListingOutputs(folder="/srv", files=["menu.txt", name])


class StuckInputs(BaseModel):
    release: str  # the call returns once this file exists


class StuckOutputs(BaseModel):
    released: bool


class Stuck(Plugin):
    """A sync plugin that ignores its deadline and cancellation: its thread stays busy until
    the test creates the release file."""

    name = "stuck"
    version = "1.0.0"
    Inputs = StuckInputs
    Outputs = StuckOutputs

    def invoke(self, inputs: StuckInputs, ctx: InvocationContext) -> StuckOutputs:
        release = Path(inputs.release)
        while not release.exists():
            time.sleep(0.02)
        return StuckOutputs(released=True)


class EchoInputs(BaseModel):
    text: str


class EchoOutputs(BaseModel):
    text: str


class SyncEcho(Plugin):
    """A fast sync plugin."""

    name = "sync-echo"
    version = "1.0.0"
    Inputs = EchoInputs
    Outputs = EchoOutputs

    def invoke(self, inputs: EchoInputs, ctx: InvocationContext) -> EchoOutputs:
        return EchoOutputs(text=inputs.text)


class AsyncEcho(Plugin):
    """A fast async plugin: the thread pool does not limit it."""

    name = "async-echo"
    version = "1.0.0"
    Inputs = EchoInputs
    Outputs = EchoOutputs

    async def invoke(self, inputs: EchoInputs, ctx: InvocationContext) -> EchoOutputs:
        return EchoOutputs(text=inputs.text)


class PoliteInputs(BaseModel):
    marker: str  # written once the call sees ctx.cancelled


class Polite(Plugin):
    """A sync plugin that waits until its call is cancelled, and says so in a file."""

    name = "polite"
    version = "1.0.0"
    Inputs = PoliteInputs
    Outputs = StuckOutputs

    def invoke(self, inputs: PoliteInputs, ctx: InvocationContext) -> StuckOutputs:
        while not ctx.cancelled:
            time.sleep(0.02)
        Path(inputs.marker).write_text("cancelled")
        return StuckOutputs(released=False)
