"""Plugins that misbehave in each way the host must survive."""

from __future__ import annotations

from typing import Any, Literal, NoReturn

from pydantic import BaseModel

from flowhost_sdk import (
    InvocationContext,
    NeedsIntervention,
    PermanentError,
    Plugin,
    TransientError,
)


class Fail(Plugin):
    """Raises the error class it is told to."""

    name = "fail"
    version = "1.0.0"

    class Inputs(BaseModel):
        kind: Literal["transient", "permanent", "intervention"] = "permanent"
        message: str = "it broke"
        hint: str | None = None

    class Outputs(BaseModel):
        never: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        error = {"transient": TransientError, "permanent": PermanentError,
                 "intervention": NeedsIntervention}[inputs.kind]
        raise error(inputs.message, hint=inputs.hint)


class BadOutput(Plugin):
    """Returns outputs that do not match its own Outputs model."""

    name = "bad-output"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        project_path: str
        count: int

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Any:
        return {"project_path": "/tmp/x", "count": "many"}


class Crash(Plugin):
    """Raises an exception that is not one of the SDK's."""

    name = "crash"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        never: str

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        raise ZeroDivisionError("division by zero in the plugin")


class Buggy(Plugin):
    """Has a bug: a helper of its own raises an exception that names its input."""

    name = "buggy"
    version = "1.0.0"

    class Inputs(BaseModel):
        token: str = ""

    class Outputs(BaseModel):
        never: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return _parse_settings(inputs.token)


def _parse_settings(token: str) -> NoReturn:
    raise ValueError(f"no settings for token {token}")


class Misnamed(Plugin):
    """Its entry point is 'misnamed' but it calls itself something else."""

    name = "something-else"
    version = "1.0.0"

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        pass

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs()


class NotAPlugin:
    """An entry point that points at something that is not a Plugin."""
