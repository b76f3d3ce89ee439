"""``output``: an assertion on a field of the step's outputs, compared as JSON values."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from flowhost.checks.base import CheckContext, _Args
from flowhost.checks.formatting import listing, redact_value, short
from flowhost.events import CheckResult

JsonType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]
_ASSERTIONS = {"equals": "equals", "matches": "matches", "in_": "in", "type_": "type"}


class OutputArgs(_Args):
    field: str = Field(min_length=1)
    equals: Any = None
    matches: str | None = None
    in_: list[Any] | None = Field(None, alias="in")
    type_: JsonType | None = Field(None, alias="type")

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, OverflowError) as exc:  # `a{99999999999}` is an OverflowError
                raise ValueError(f"not a valid regular expression: {exc}") from None
            except RecursionError:  # re's parser recurses once per group
                raise ValueError("not a valid regular expression: its groups nest too "
                                 "deeply") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [alias for name, alias in _ASSERTIONS.items() if name in self.model_fields_set]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ValueError(f"exactly one of equals, matches, in, type is required{got}")
        return self


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _json_equal(a: Any, b: Any) -> bool:
    """``==`` except that a boolean never equals a number (``True != 1``), as in JSON."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _show(value: Any, redact: Callable[[str], str]) -> str:
    """JSON text of ``value``, secrets masked first: escaping would hide them from the mask."""
    return short(json.dumps(redact_value(value, redact), default=str), 80)


def _lookup(outputs: Any, dotted: str) -> Any:
    """The value at ``a.b.0`` in ``outputs``; raises LookupError with a readable message."""
    current = outputs
    walked: list[str] = []
    for part in dotted.split("."):
        here = ".".join([*walked, part])
        if isinstance(current, Mapping):
            if part not in current:
                keys = listing(sorted(map(str, current)), 10) or "none"
                raise LookupError(f"no field {here!r} in the outputs (fields there: {keys})")
            current = current[part]
        elif isinstance(current, list | tuple):
            try:
                current = current[int(part)]
            except (ValueError, IndexError):
                raise LookupError(
                    f"no item {here!r}: {'.'.join(walked) or 'outputs'} is a list of {len(current)}"
                ) from None
        else:
            raise LookupError(f"no field {here!r}: {'.'.join(walked)} is {_json_type(current)}")
        walked.append(part)
    return current


# How long a match may take when the step has no deadline (final_validation, no timeout).
MATCH_TIMEOUT_S = 10.0


async def _search(pattern: str, text: str, deadline: float | None) -> bool | str:
    """Whether ``pattern`` matches somewhere in ``text``, or why it could not be decided.

    A pattern with nested repetition (``(a+)+$``) can take exponential time, and Python's
    ``re`` holds the interpreter meanwhile: no timeout, no Ctrl-C. The ``regex`` module
    (``V0``: the same syntax as ``re``) matches with a timeout and without the GIL, on a
    daemon thread, so the event loop, signals and the step's deadline all keep working."""
    import regex

    from flowhost.threads import shared_executor

    limit = MATCH_TIMEOUT_S if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        compiled = regex.compile(pattern, regex.V0)
    except (regex.error, OverflowError, RecursionError) as exc:
        return f"/{pattern}/ is not a usable regular expression: {exc}"

    def search() -> bool:
        return compiled.search(text, timeout=limit, concurrent=True) is not None

    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(shared_executor(), search)
    except TimeoutError:
        return (f"matching /{pattern}/ took longer than {limit:.3g} s and was stopped "
                "(nested repetition such as (a+)+ can take exponential time): simplify the "
                "pattern")


class Output:
    kind = "output"
    Args = OutputArgs

    async def run(self, args: OutputArgs, ctx: CheckContext) -> CheckResult:
        if ctx.outputs is None:
            message = "no step outputs here: output checks belong in a step's validation"
            return CheckResult(self.kind, False, message)
        try:
            value = _lookup(ctx.outputs, args.field)
        except LookupError as exc:
            return CheckResult(self.kind, False, str(exc.args[0]))
        name = args.field
        if args.type_ is not None:
            actual = _json_type(value)
            ok = actual == args.type_ or (args.type_ == "number" and actual == "integer")
            message = f"{name} is {actual}" + ("" if ok else f", expected {args.type_}")
        elif args.matches is not None:
            found = await _search(args.matches, str(value), ctx.deadline)
            if isinstance(found, str):
                return CheckResult(self.kind, False, f"{name}: {found}")
            ok = found
            verb = "matches" if ok else "does not match"
            message = f"{name} = {_show(value, ctx.redact)} {verb} /{args.matches}/"
        elif args.in_ is not None:
            ok = any(_json_equal(value, option) for option in args.in_)
            shown, options = _show(value, ctx.redact), _show(args.in_, ctx.redact)
            message = f"{name} = {shown} is {'' if ok else 'not '}one of {options}"
        else:
            ok = _json_equal(value, args.equals)
            expected = "" if ok else f", expected {_show(args.equals, ctx.redact)}"
            message = f"{name} = {_show(value, ctx.redact)}{expected}"
        return CheckResult(self.kind, ok, message)
