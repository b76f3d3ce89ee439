"""What every check shares: the context it runs in, the protocol it implements, the errors of
a wrong check spec, and the base classes of the args models."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from flowhost.events import CheckResult

ENTRY_POINT_GROUP = "flowhost.validators"


def _identity(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check may know about where it runs.

    ``workdir`` (default: the process's cwd) is what relative paths, ``command``'s default
    ``cwd`` and ``importable``'s ``path`` are resolved against. ``deadline`` (a
    ``time.monotonic()`` instant, or None) is the step's: a check that computes for long
    stops there.
    """

    outputs: dict[str, Any] | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the run's
    redact: Callable[[str], str] = _identity
    workdir: str | None = None
    deadline: float | None = None

    def resolve(self, path: str) -> str:
        return os.path.join(self.workdir, path) if self.workdir and path else path


@runtime_checkable
class Check(Protocol):
    """What built-in kinds and ``flowhost.validators`` entry points implement.

    ``run`` may be ``async`` or plain (a plain one runs in a worker thread). It receives an
    instance of ``Args`` and returns a ``CheckResult``; ``run_check`` fills in its ``kind``
    and ``duration_s`` and redacts it.
    """

    @property
    def kind(self) -> str: ...

    @property
    def Args(self) -> type[BaseModel]: ...  # noqa: N802

    def run(self, args: Any, ctx: CheckContext) -> CheckResult | Awaitable[CheckResult]: ...


# --------------------------------------------------------------------------------- errors


class CheckError(Exception):
    """A check's spec is wrong (unknown kind, bad args, broken validator); found before it runs."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class UnknownCheckKind(CheckError):
    def __init__(self, kind: str, known: list[str]) -> None:
        self.known = known
        close = difflib.get_close_matches(kind, known, n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(kind, f"unknown check kind {kind!r}{hint} (known: {', '.join(known)})")


class CheckArgsError(CheckError):
    """``field`` is the first offending field's dotted path (None for a whole-args problem)."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(kind, message)
        self.field = field


class CheckLoadError(CheckError):
    """A ``flowhost.validators`` entry point failed to import or is not a check."""


# ----------------------------------------------------------------------------- args models


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # a bare value instead of a mapping means this field: `command: "pytest -q"`
    shorthand_field: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if cls.shorthand_field and isinstance(data, str | list):
            return {cls.shorthand_field: data}
        return data


class _PathList(RootModel[list[str]]):
    """A list of paths; a single string is taken as a list of one."""

    root: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_path(cls, data: Any) -> Any:
        return [data] if isinstance(data, str) else data
