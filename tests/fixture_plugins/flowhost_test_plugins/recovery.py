"""Plugins for the recovery ladder's tests: one that fails a set number of times."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from flowhost_sdk import (
    InvocationContext,
    NeedsIntervention,
    PermanentError,
    Plugin,
    TransientError,
)


class Flaky(Plugin):
    """Fails its first ``fail_times`` calls (counted in ``counter_file``), then succeeds."""

    name = "flaky"
    version = "1.0.0"

    class Inputs(BaseModel):
        counter_file: str
        fail_times: int = 1
        kind: Literal["transient", "permanent", "intervention", "validation"] = "transient"
        retry_after: float | None = None
        hint: str | None = None

    class Outputs(BaseModel):
        calls: int
        value: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        counter = Path(inputs.counter_file)
        calls = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(calls))
        if calls <= inputs.fail_times:
            if inputs.kind == "transient":
                raise TransientError(f"failure {calls}", hint=inputs.hint,
                                     retry_after=inputs.retry_after)
            if inputs.kind == "permanent":
                raise PermanentError(f"failure {calls}", hint=inputs.hint)
            if inputs.kind == "intervention":
                raise NeedsIntervention(f"failure {calls}", hint=inputs.hint)
            return self.Outputs(calls=calls, value="bad")  # the step's checks reject it
        return self.Outputs(calls=calls, value="good")


class Alternative(Plugin):
    """A fallback with the same outputs as Flaky and a differently named input."""

    name = "alternative"
    version = "1.0.0"

    class Inputs(BaseModel):
        note: str = ""
        counter_file: str = ""

    class Outputs(BaseModel):
        calls: int
        value: str

    async def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        return self.Outputs(calls=0, value=f"alternative {inputs.note}".strip())
