"""The daemon's checker process: checking a submitted spec imports its plugins (and asks
remote ones for their schemas), which must not happen in the process that serves the API.

    python -m flowhost.daemon.checker --fd N [--config F] [--env-allow A,B] [--workdir D]

JSON lines over the socket ``--fd``, one request at a time, each answered with its ``id``:

- ``{"op": "check", "id", "text", "spec_name", "overrides": [...]}`` ->
  ``{"id", "ok": true, "workflow_id", "total_steps", "spec_text", "spec_redacted",
  "overrides"}`` (the text and overrides as the run records them: secret values masked), or
  ``{"id", "ok": false, "message"}`` with the message the CLI gives for the same spec (or,
  for a text that holds a secret's value, why the daemon cannot run it);
- ``{"op": "outputs", "id", "spec_text", "spec_path", "overrides", "step_id", "outputs"}``
  -> ``{"id", "ok", "message"}``: whether outputs given with a skip fit the step plugin's
  output schema and hold no secret;
- ``{"op": "mask", "id", "spec_text", "overrides", "texts": [...]}`` -> ``{"id", "ok",
  "texts"}``: texts a person gave (a decision's comment, a cancel's reason) with the values
  of the secrets the spec reads masked, as everything the run records is.

The spec sees only the variables ``--env-allow`` names (``flowhost.daemon.environment``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from flowhost import api
from flowhost.catalog import Catalog
from flowhost.config import HostConfig, load_config
from flowhost.context import RunContext, make_context
from flowhost.daemon.channel import Channel, die_with_parent
from flowhost.daemon.environment import allowed, explain
from flowhost.execution import hide_secrets, secret_values
from flowhost.intervene import outputs_problem
from flowhost.problems import SpecError, UserInputError
from flowhost.redact import Redactor, holds_secret
from flowhost.spec_loading import parse_spec
from flowhost.static import check

_SECRET_NAME = re.compile(r"secret\.([A-Za-z_][A-Za-z0-9_]*)")


class Checker:
    def __init__(self, config: HostConfig, allow: list[str], workdir: str) -> None:
        self.allow = allow
        self.ctx: RunContext = make_context(workdir=workdir, env=allowed(os.environ, allow),
                                            config=config)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            if request.get("op") == "check":
                return {"ok": True, **self.check(request)}
            if request.get("op") == "outputs":
                problem = self.outputs(request)
                return {"ok": problem is None, "message": problem or ""}
            if request.get("op") == "mask":
                return {"ok": True, "texts": self.mask(request)}
            return {"ok": False, "message": f"unknown request {request.get('op')!r}"}
        except SpecError as exc:
            return {"ok": False, "message": str(explain(exc, self.allow))}
        except UserInputError as exc:
            return {"ok": False, "message": str(exc)}

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        overrides = [str(o) for o in request.get("overrides", [])]
        checked = api.check_spec(str(request["text"]), self.ctx,
                                 spec_name=str(request["spec_name"]), overrides=overrides)
        secrets = secret_values(checked.plan, self.ctx.env)
        text = checked.text
        masked = Redactor(secrets.values()).text(text) if secrets else text
        if masked != text:
            # A run keeps only the masked copy; with no file to read again, it cannot run.
            names = sorted(name for name, value in secrets.items() if value in text)
            refs = ", ".join("${secret." + name + "}" for name in names or sorted(secrets))
            raise UserInputError(
                f"{checked.path}: the spec holds the value of {refs} in clear. A spec the "
                "daemon runs is kept with secret values masked, and could not run from that: "
                "write the reference instead of the value")
        return {"workflow_id": checked.plan.workflow.workflow_id,
                "total_steps": len(checked.plan.steps), "spec_text": masked,
                "spec_redacted": masked != text,
                "overrides": hide_secrets(overrides, secrets)}

    def mask(self, request: dict[str, Any]) -> list[str]:
        # The names as the spec and overrides refer to them (a spec that no longer checks
        # still names them); a name that is only text like it masks too, which costs nothing.
        text = " ".join([str(request["spec_text"]), *map(str, request.get("overrides", []))])
        env = self.ctx.env
        redactor = Redactor(env[name] for name in set(_SECRET_NAME.findall(text))
                            if env.get(name))
        return [redactor.text(str(t)) for t in request.get("texts", [])]

    def outputs(self, request: dict[str, Any]) -> str | None:
        try:
            spec = parse_spec(str(request["spec_text"]), str(request["spec_path"]),
                              [str(o) for o in request.get("overrides", [])])
            plan = check(spec, Catalog.for_context(self.ctx), self.ctx.env)
        except UserInputError:
            return None  # the spec no longer checks: the run says so when it goes on
        outputs = request.get("outputs")
        step_id = str(request.get("step_id"))
        planned = plan.steps.get(step_id)
        if planned is not None:
            problem = outputs_problem(outputs, planned.invoker.output_schema)
            if problem is not None:
                return (f"the outputs do not fit the outputs of {planned.invoker.name} "
                        f"(step '{step_id}'): {problem}")
        if holds_secret(outputs, secret_values(plan, self.ctx.env).values()):
            return ("the outputs hold the value of a secret; flowhost never stores secrets. "
                    "Give outputs without it")
        return None


async def main_async(args: argparse.Namespace) -> int:
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = load_config(args.config) if args.config else HostConfig()
    checker = Checker(config, [n for n in args.env_allow.split(",") if n], args.workdir)
    channel = await Channel.over(socket.socket(fileno=args.fd))
    await channel.send({"type": "ready", "pid": os.getpid()})
    while True:
        request = await channel.receive()
        if request is None:
            return 0
        # On this thread: the checker has nothing else to do meanwhile (its loop only
        # reads the next request), and a hop to another thread costs ~10% of a check.
        answer = checker.answer(request)
        if not await channel.send({"id": request.get("id"), **answer}):
            return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowhost.daemon.checker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, default=os.getppid())
    parser.add_argument("--config", default=None)
    parser.add_argument("--env-allow", default="")
    parser.add_argument("--workdir", default=os.getcwd())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
