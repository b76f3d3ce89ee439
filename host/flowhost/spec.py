"""The workflow spec as pydantic models: the one shape that every spec is validated into,
and what the planner, the engine and the recovery ladder read of a workflow (each step's
policies, and the workflow's defaults for them).

Reading a file into these models, with every problem located, is ``flowhost.spec_loading``;
``--set`` overrides are ``flowhost.spec_overrides``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from flowhost.problems import quote_name

RESERVED_IDS = frozenset({"env", "secret", "inputs"})
STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


# Bounds of the spec's delays and timeouts, in seconds: beyond them a value is a mistake (a
# unit mix-up, .inf), and unbounded ones overflow the arithmetic of backoff and deadlines.
MAX_DELAY_S = 86_400  # a day
MAX_TIMEOUT_S = 604_800  # a week
MAX_MULTIPLIER = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Level 1 of the recovery ladder: exponential backoff between attempts."""

    max_attempts: int = Field(3, ge=1, le=1000)
    initial_delay: float = Field(1.0, ge=0, le=MAX_DELAY_S, allow_inf_nan=False)
    multiplier: float = Field(2.0, ge=1, le=MAX_MULTIPLIER, allow_inf_nan=False)
    max_delay: float = Field(60.0, ge=0, le=MAX_DELAY_S, allow_inf_nan=False)
    jitter: bool = False

    @model_validator(mode="after")
    def _cap_not_below_start(self) -> RetryPolicy:
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) is below initial_delay ({self.initial_delay})"
            )
        return self

    def delay_before(self, attempt: int) -> float:
        """The (un-jittered) pause before ``attempt`` (2, 3, ...)."""
        exponent = attempt - 2
        try:
            grown = self.initial_delay * self.multiplier**exponent
        except OverflowError:  # 100.0**998: far beyond any max_delay
            return float(self.max_delay)
        return float(min(grown, self.max_delay))


NO_RETRY = RetryPolicy(max_attempts=1)


class Fallback(_Strict):
    plugin: str = Field(min_length=1)
    # None: the primary's resolved inputs, restricted to the fields the fallback declares
    inputs: dict[str, Any] | None = None


class ManualPolicy(_Strict):
    """Level 3: a person decides. ``timeout`` bounds the wait for an answer (seconds from
    the question, None: as long as it takes); then ``default`` applies, as decided by
    "timeout": ``fail`` (the step fails, its ``on_failure`` decides), ``skip`` or ``abort``."""

    hint: str | None = None
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    default: Literal["abort", "skip", "fail"] = "fail"

    @model_validator(mode="after")
    def _default_needs_timeout(self) -> ManualPolicy:
        # Without a timeout nothing ever applies the default: saying one is a mistake.
        if "default" in self.model_fields_set and self.timeout is None:
            raise ValueError("`default` applies when nobody answers within `timeout`; give "
                             "the timeout too (e.g. `manual: {timeout: 3600, default: skip}`)")
        return self


class BreakerPolicy(_Strict):
    failures: int = Field(5, ge=1)
    reset_after: float = Field(30.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)


class CheckSpec(BaseModel):
    """One validation check: ``{kind: args}`` in the spec."""

    model_config = ConfigDict(frozen=True)
    kind: str
    args: Any


def _parse_checks(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    parsed: list[Any] = []
    for item in value:
        if isinstance(item, dict) and len(item) == 1:
            ((kind, args),) = item.items()
            parsed.append({"kind": kind, "args": args})
        elif isinstance(item, CheckSpec):
            parsed.append(item)
        else:
            raise ValueError(
                "each check is a mapping with exactly one key, the check kind "
                "(e.g. `- files_exist: [main.py]`)"
            )
    return parsed


# Default factories written in Python: pydantic reads each factory's signature when it builds
# a model, and for a builtin (``list``, ``dict``) that means parsing its text signature with
# ``tokenize``, whose patterns are then compiled: ~3 ms of every process's start.
def _no_inputs() -> dict[str, Any]:
    return {}


def _none() -> list[Any]:
    return []


class Step(_Strict):
    number: int | None = None
    id: str = ""
    purpose: str = ""
    plugin: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=_no_inputs)
    needs: list[str] = Field(default_factory=_none)
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    cache: bool | None = None  # `cache: {ttl: N}` is read as `cache: true, cache_ttl: N`
    # seconds a cached result stays usable
    cache_ttl: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    retry: RetryPolicy | None = None
    fallback: list[Fallback] = Field(default_factory=_none)
    manual: ManualPolicy | None = ManualPolicy()
    on_failure: Literal["abort", "continue"] = "abort"
    validation: list[CheckSpec] = Field(default_factory=_none)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict) or (
                data.get("id") and data.get("manual") not in (True, False)
                and not isinstance(data.get("cache"), dict)):
            return data  # no shorthand: as it is
        data = dict(data)
        if not data.get("id") and isinstance(data.get("plugin"), str):
            data["id"] = default_step_id(data["plugin"])
        if data.get("manual") is False:
            data["manual"] = None
        elif data.get("manual") is True:
            data["manual"] = {}
        if isinstance(data.get("cache"), dict):
            options = dict(data["cache"])
            unknown = sorted(str(key) for key in options if key != "ttl")
            if unknown or "cache_ttl" in data:
                raise ValueError(
                    "`cache` is true, false or {ttl: SECONDS}"
                    + (f"; unknown field {quote_name(unknown[0])}" if unknown else
                       "; give the ttl once, not in both `cache` and `cache_ttl`"))
            data["cache"] = True
            if options.get("ttl") is not None:
                data["cache_ttl"] = options["ttl"]
        return data

    @field_validator("validation", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        return _parse_checks(value)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(
                f"{quote_name(value)} is not a valid step id: use letters, digits, '_' and "
                "'-', starting with a letter or '_'"
            )
        if value in RESERVED_IDS:
            raise ValueError(
                f"'{value}' is reserved for references (${{{value}.…}}); pick another id"
            )
        return value


class Defaults(_Strict):
    retry: RetryPolicy | None = None
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    # false: no step uses the cache unless it says `cache: true`; true: the usual (the
    # steps of idempotent plugins) — a plugin that is not idempotent is cached only when its
    # step asks for it itself
    cache: bool | None = None


class Workflow(_Strict):
    workflow_id: str = Field(min_length=1)
    description: str = ""
    pattern: str | None = None
    steps: list[Step] = Field(min_length=1)
    final_validation: list[CheckSpec] = Field(default_factory=_none)
    defaults: Defaults = Defaults()
    breaker: BreakerPolicy | None = None

    @field_validator("final_validation", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> Any:
        return _parse_checks(value)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def retry_for(self, step: Step) -> RetryPolicy:
        return step.retry or self.defaults.retry or NO_RETRY

    def timeout_for(self, step: Step) -> float | None:
        return step.timeout if step.timeout is not None else self.defaults.timeout

    def cache_for(self, step: Step, idempotent: bool) -> bool:
        if step.cache is not None:
            return step.cache
        return idempotent and self.defaults.cache is not False


def default_step_id(plugin: str) -> str:
    """A step without ``id`` is named after its plugin (the last path part of a URL)."""
    name = plugin.rstrip("/").rsplit("/", 1)[-1]
    return name


def raw_step_id(raw: Any, index: int) -> str:
    """The id of step ``index`` as written, before it is validated (``#N`` when it has none),
    for loading's problems and ``--set``."""
    if isinstance(raw, dict):
        if isinstance(raw.get("id"), str) and raw["id"]:
            return str(raw["id"])
        if isinstance(raw.get("plugin"), str):
            return default_step_id(raw["plugin"])
    return f"#{index + 1}"
