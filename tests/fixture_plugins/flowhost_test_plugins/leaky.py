"""A plugin that repeats the value it is given everywhere a plugin can put text: its outputs,
its progress messages, ``ctx.logger`` (also with a traceback), ``print`` to stdout and stderr,
the message and hint of the error it raises. The secret scan gives it a secret and looks
for the value in everything flowhost prints or writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, SecretStr

from flowhost_sdk import (
    InvocationContext,
    NeedsIntervention,
    PermanentError,
    Plugin,
    TransientError,
)

Mode = Literal["echo", "transient", "permanent", "intervention", "crash", "flaky"]


class Leaky(Plugin):
    """``mode`` says how it ends: ``echo`` returns the value in its outputs; ``transient``,
    ``permanent`` and ``intervention`` raise that error with the value in the message and
    the hint; ``crash`` raises a ``ValueError`` that names it (its traceback shown with
    ``-v``); ``flaky`` raises a transient error on the first call of each ``counter`` file,
    then echoes. With ``stdio`` it also prints the value to stdout and stderr. ``vault`` goes
    only to an output field it marks ``SecretStr``."""

    name = "leaky"
    version = "1.0.0"

    class Inputs(BaseModel):
        secret: str
        mode: Mode = "echo"
        counter: str = ""
        label: str = ""
        stdio: bool = False
        vault: str = ""

    class Outputs(BaseModel):
        echo: str
        sentence: str
        blob: str
        items: list[str]
        nested: dict[str, str]
        vault: SecretStr = SecretStr("")

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        secret = inputs.secret
        if inputs.stdio:
            print(f"stdout of the plugin: {secret}", flush=True)
            print(f"stderr of the plugin: {secret}", file=sys.stderr, flush=True)
        ctx.progress(0.25, f"working with {secret}")
        ctx.logger.info("info: %s", secret)
        ctx.logger.warning("warning: %r", secret)
        try:
            raise KeyError(secret)
        except KeyError:
            ctx.logger.exception("logged with a traceback: %s", secret)
        ctx.progress(0.75, json.dumps({"token": secret}))
        mode = inputs.mode
        if mode == "flaky":
            counter = Path(ctx.workdir, inputs.counter or "leaky-calls")
            calls = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(calls + 1))
            mode = "transient" if calls == 0 else "echo"
        if mode == "transient":
            raise TransientError(f"the service refused {secret}", hint=f"rotate {secret}",
                                 retry_after=0)
        if mode == "permanent":
            raise PermanentError(f"no good: {secret!r}", hint=f"replace {secret}")
        if mode == "intervention":
            raise NeedsIntervention(f"a person must look at {secret}",
                                    hint=f"log in with {secret} by hand")
        if mode == "crash":
            _helper(secret)
        return self.Outputs(
            echo=secret, sentence=f"the value is {secret}, {inputs.label}; its end: {secret[-30:]}",
            blob=json.dumps({"token": secret, "label": inputs.label}),
            items=["plain", secret, f"<{secret}>"], nested={"token": secret, secret: "key"},
            vault=SecretStr(inputs.vault))


def _helper(secret: str) -> None:
    raise ValueError(f"the plugin's own bug, holding {secret!r}") from KeyError(secret)
