"""A third-party validation check kind, published in entry-point group ``flowhost.validators``.

In a workflow::

    validation:
      - file_contains: {path: "${writer.path}", text: "x = 1"}

A check is any class with a ``kind``, an ``Args`` pydantic model (what the spec gives; checked
by ``flowhost validate`` before anything runs, so keep fields that may hold ``${...}``
references as plain ``str``) and a ``run(args, ctx)`` that returns a ``CheckResult``. ``run``
may be ``async``; a plain one like this runs in a worker thread. Exceptions it raises become a
failed result, so it only needs to handle the failures it wants to word well.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from flowhost.checks import CheckContext
from flowhost.events import CheckResult


class FileContainsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    text: str = Field(min_length=1)


class FileContains:
    """Passes when the file at ``path`` contains ``text``."""

    kind = "file_contains"
    Args = FileContainsArgs

    def run(self, args: FileContainsArgs, ctx: CheckContext) -> CheckResult:
        try:
            with open(ctx.resolve(args.path), encoding="utf-8", errors="replace") as handle:
                content = handle.read()
        except OSError as exc:
            return CheckResult(self.kind, False, f"cannot read {args.path}: {exc.strerror}")
        if args.text not in content:
            return CheckResult(self.kind, False, f"{args.path} does not contain {args.text!r}")
        return CheckResult(self.kind, True, f"{args.path} contains {args.text!r}")
