"""Validating a check's args (statically, for ``flowhost validate``) and running a check so that
nothing it does can escape: every outcome is a redacted ``CheckResult``."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from flowhost.checks.base import CheckArgsError, CheckContext, CheckError
from flowhost.checks.formatting import redact_value
from flowhost.checks.registry import get_check
from flowhost.events import CheckResult


def _field_name(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _args_error(kind: str, model: type[BaseModel], error: ValidationError) -> CheckArgsError:
    problems: list[str] = []
    fields: list[str] = []
    for item in error.errors(include_url=False):
        name = _field_name(item["loc"])
        text = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(f.alias or n for n, f in model.model_fields.items())
            text = f"unknown field {name!r} (expected one of: {allowed})"
        elif item["type"] == "missing":
            text = f"{name} is required"
        elif name:
            text = f"{name}: {text}"
        problems.append(text)
        if name:
            fields.append(name)
    message = f"{kind} check: {'; '.join(problems)}"
    return CheckArgsError(kind, message, fields[0] if fields else None)


def parse_check_args(kind: str, args: Any) -> BaseModel:
    """Validated args for ``kind``; raises CheckArgsError naming the field (or CheckError)."""
    model = get_check(kind).Args
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise _args_error(kind, model, exc) from None


async def run_check(kind: str, args: Any, ctx: CheckContext | None = None) -> CheckResult:
    """Runs one check; a failing, misconfigured or crashing check is a failed CheckResult."""
    ctx = ctx or CheckContext()
    started = time.perf_counter()
    try:
        check = get_check(kind)
        parsed = args if isinstance(args, check.Args) else parse_check_args(kind, args)
        run = check.run
        outcome: Any = (
            run(parsed, ctx)
            if inspect.iscoroutinefunction(run)
            else await asyncio.to_thread(run, parsed, ctx)
        )
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, CheckResult):
            result = outcome
        else:
            message = f"{kind} check returned {type(outcome).__name__}, not a CheckResult"
            result = CheckResult(kind, False, message)
    except CheckError as exc:
        result = CheckResult(kind, False, exc.message)
    except Exception as exc:
        result = CheckResult(kind, False, f"{kind} check crashed: {type(exc).__name__}: {exc}")
    return dataclasses.replace(
        result,
        kind=kind,
        message=ctx.redact(result.message),
        details=redact_value(result.details, ctx.redact),
        duration_s=time.perf_counter() - started,
    )
