"""The workflow spec: pydantic models, and loading a file into them with located errors.

Loading validates the shape of each step on its own, so one malformed step does not hide
the problems of the others; everything that needs the plugins' schemas (references, types,
cycles) is checked afterwards by ``flowhost.static``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from flowhost.problems import (
    Problem,
    SpecError,
    as_bytes,
    did_you_mean,
    is_utf8,
    quote_name,
    shorten,
)
from flowhost.refs import RefSyntaxError, compile_value, iter_refs
from flowhost.source import Document, PathKey, load_document, parse_document
from flowhost.yaml_common import MAX_DEPTH

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


class LoadedSpec(BaseModel):
    """A workflow and where it came from, so later checks can point at lines."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    workflow: Workflow
    document: Document

    @property
    def file(self) -> str:
        return self.document.file

    def problem(
        self, message: str, *, path: PathKey = (), step: str | None = None,
        field: str | None = None, fix: str | None = None,
    ) -> Problem:
        origin = _with_origin(message, self.document, path)
        if origin == message and message.startswith(CYCLE):
            origin = _cycle_origin(message, self.document)
        return Problem(origin, file=self.file, line=self.document.line_of(path), step=step,
                       field=field, fix=fix)


# How flowhost.static words a cycle: "dependency cycle: a → b → a".
CYCLE = "dependency cycle: "


def _cycle_origin(message: str, doc: Document) -> str:
    """A cycle is reported at its first step, but the reference that closes it may come from
    a ``--set`` on any of its steps: name those, or the user looks for it in the file."""
    members = set(message.removeprefix(CYCLE).split(" → "))
    closing = [override for override in dict.fromkeys(doc.overridden.values())
               if override.partition(".")[0] in members and _reads(override) & members]
    if not closing:
        return message
    given = ", ".join(f"--set {shorten(override)}" for override in closing)
    return f"{message} (through the value given by {given})"


def load_spec(path: str | Path, overrides: list[str] | None = None) -> LoadedSpec:
    return build_spec(load_document(path), overrides)


def parse_spec(text: str, file: str = "<spec>", overrides: list[str] | None = None) -> LoadedSpec:
    return build_spec(parse_document(text, file), overrides)


def build_spec(doc: Document, overrides: list[str] | None = None) -> LoadedSpec:
    problems: list[Problem] = []
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError([Problem("the top level must be a mapping with `workflow_id` and "
                                 "`steps`", file=doc.file, line=1)])
    if overrides:
        problems += _apply_overrides(data, overrides, doc)
    steps_raw = data.get("steps")
    steps: list[Step] = []
    kept: list[int] = []  # the index in steps_raw of each of steps
    if isinstance(steps_raw, list):
        try:  # every step valid: all in one call
            steps = _STEPS.validate_python(steps_raw)
            kept = list(range(len(steps)))
        except ValidationError:
            steps, kept = [], []
    if isinstance(steps_raw, list) and len(steps) < len(steps_raw):
        for index, raw in enumerate(steps_raw):
            try:
                step: Step | None = Step.model_validate(raw)
            except ValidationError as exc:
                problems += _located(exc, doc, ("steps", index), _raw_step_id(raw, index))
                step = _without_faulty_fields(raw, exc)
            if step is not None:
                steps.append(step)
                kept.append(index)
    top = {key: value for key, value in data.items() if key != "steps"}
    if isinstance(steps_raw, list) and steps_raw:
        # Each step was checked on its own above; the valid ones stand for the list.
        top["steps"] = steps or [_PLACEHOLDER]
    elif "steps" in data:
        top["steps"] = steps_raw
    workflow = _top_level(top, doc, problems)
    if not steps:  # nothing (or only the placeholder) for the other checks to look at
        workflow = None
    raw_ids = [_raw_step_id(raw, i) for i, raw in enumerate(steps_raw)] if isinstance(
        steps_raw, list) else []
    problems += _duplicate_ids(raw_ids, doc)
    if problems or workflow is None:
        # The valid part still goes through the other checks, so that an unknown field or
        # one malformed step does not hide the reference and type problems of the rest.
        partial = LoadedSpec(workflow=workflow, document=_renumbered(doc, kept)) if (
            workflow) else None
        raise SpecError(problems, partial=partial, known_ids=frozenset(raw_ids))
    return LoadedSpec(workflow=workflow, document=doc)


def _top_level(top: dict[str, Any], doc: Document, problems: list[Problem]) -> Workflow | None:
    """Report the top-level problems (the steps' own are reported already), and build what
    is valid of the workflow: unknown fields dropped, faulty ones left at their defaults."""
    try:
        return Workflow.model_validate(top)
    except ValidationError as exc:
        problems += _located(exc, doc, (), None)
        candidate = dict(top)
        for error in exc.errors():
            if error["loc"]:
                candidate.pop(str(error["loc"][0]), None)
    candidate.setdefault("workflow_id", "(invalid)")
    try:
        return Workflow.model_validate(candidate)
    except ValidationError:
        return None


def _renumbered(doc: Document, kept: list[int]) -> Document:
    """The document with the lines of the steps in ``kept`` under their index among them, so
    that problems about the partial workflow's steps point at their own lines."""
    if kept == list(range(len(kept))):
        return doc
    position = {index: new for new, index in enumerate(kept)}

    def moved(table: dict[PathKey, Any]) -> dict[PathKey, Any]:
        result: dict[PathKey, Any] = {}
        for key, value in table.items():
            if len(key) >= 2 and key[0] == "steps" and isinstance(key[1], int):
                if key[1] in position:
                    result[("steps", position[key[1]], *key[2:])] = value
            else:
                result[key] = value
        return result

    return Document(file=doc.file, data=doc.data, lines=moved(doc.lines),
                    overridden=moved(doc.overridden))


# Fields without which a step cannot be checked at all: dropping them would only report
# consequences ("plugin is required", "input 'x' is missing").
_ESSENTIAL = frozenset({"plugin", "id", "inputs"})


def _without_faulty_fields(raw: Any, exc: ValidationError) -> Step | None:
    """The step without its faulty fields (unknown ones, or a bad `timeout`, `retry`,
    `on_failure`...), so that the static checks can still look at its plugin, inputs and
    references. Not when an essential field is at fault, nor when an unknown field looks like
    a misspelled field the step lacks (`inputz:`): that would report consequences."""
    if not isinstance(raw, dict):
        return None
    faulty: set[str] = set()
    for error in exc.errors():
        if not error["loc"]:
            return None
        name = str(error["loc"][0])
        faulty.add("cache" if name == "cache_ttl" else name)  # `cache: {ttl: N}`
    unknown = {name for name in faulty if name not in Step.model_fields}
    absent = [name for name in Step.model_fields if name not in raw]
    if faulty & _ESSENTIAL or any(did_you_mean(name, absent) for name in unknown):
        return None
    try:
        return Step.model_validate({k: v for k, v in raw.items() if str(k) not in faulty})
    except ValidationError:
        return None


_PLACEHOLDER = Step(plugin="placeholder")
_STEPS = TypeAdapter(list[Step])


def _raw_step_id(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        if isinstance(raw.get("id"), str) and raw["id"]:
            return str(raw["id"])
        if isinstance(raw.get("plugin"), str):
            return default_step_id(raw["plugin"])
    return f"#{index + 1}"


def _raw_at(doc: Document, path: PathKey) -> Any:
    """The raw value at ``path`` of the document, or {} when there is none."""
    value: Any = doc.data
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return value


def _located(exc: ValidationError, doc: Document, base: PathKey, step: str | None) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        # Drop pydantic's union-branch markers so the field reads like the spec.
        loc = tuple(p for p in loc if p not in {"ManualPolicy", "bool", "CheckSpec"})
        if loc and loc[0] == "cache_ttl" and "cache_ttl" not in _raw_at(doc, base):
            loc = ("cache", "ttl", *loc[1:])  # read from `cache: {ttl: N}`: name it so
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
            known = _known_fields(base, loc)
            hint = did_you_mean(str(loc[-1]), known) if known else None
            fix = hint or (f"known fields: {', '.join(sorted(known))}" if known else None)
        elif error["type"] == "missing":
            message, fix = "is required", None
        else:
            message = message.removeprefix("Value error, ")
            fix = _bound_fix(error["type"], loc)
        problems.append(
            Problem(
                _with_origin(message, doc, (*base, *loc)),
                file=doc.file,
                line=doc.line_of((*base, *loc)),
                step=step,
                field=".".join(str(p) for p in loc) or None,
                fix=fix,
            )
        )
    return problems


# The spec's fields in seconds and their upper bounds (see MAX_DELAY_S), as the fixes say.
_SECONDS = {"initial_delay": (MAX_DELAY_S, "a day"), "max_delay": (MAX_DELAY_S, "a day"),
            "timeout": (MAX_TIMEOUT_S, "a week"), "cache_ttl": (MAX_TIMEOUT_S, "a week"),
            "ttl": (MAX_TIMEOUT_S, "a week"), "reset_after": (MAX_TIMEOUT_S, "a week")}


def _bound_fix(error_type: str, loc: tuple[Any, ...]) -> str | None:
    """What the bounds of a delay or timeout are, when a value is beyond them."""
    if error_type not in ("finite_number", "less_than_equal") or not loc:
        return None
    name = str(loc[-1])
    if name == "multiplier":
        return f"multiplier is a finite number from 1 to {MAX_MULTIPLIER}"
    if name not in _SECONDS:
        return None
    limit, words = _SECONDS[name]
    return f"{name} is a finite number of seconds, at most {limit} ({words})"


def _reads(override: str) -> set[str]:
    """The steps whose outputs the value of an (applied, so well-formed) ``--set`` reads."""
    try:
        value = _override_value(override.partition("=")[2], override)
        return {ref.root for ref, _, _ in iter_refs(compile_value(value))}
    except (_BadOverride, RefSyntaxError):
        return set()


def _with_origin(message: str, doc: Document, path: PathKey) -> str:
    """Say so when the value at fault came from the command line, not from the file."""
    override = doc.set_by(path)
    return f"{message} (the value given by --set {shorten(override)})" if override else message


def _known_fields(base: PathKey, loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Step if base and base[0] == "steps" else Workflow
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            break
        model = candidates[0]
    return list(model.model_fields)


def _duplicate_ids(ids: list[str], doc: Document) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for index, step_id in enumerate(ids):
        if step_id in seen:
            problems.append(
                Problem(
                    f"duplicate step id (also step #{seen[step_id] + 1})",
                    file=doc.file,
                    line=doc.line_of(("steps", index)),
                    step=step_id,
                    field="id",
                    fix="give each step a unique `id` (a step without `id` is named after "
                    "its plugin)",
                )
            )
        else:
            seen[step_id] = index
    return problems


class _BadOverride(Exception):
    """A ``--set`` that cannot be applied: why, and what to do."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


# Levels of lists and mappings above a step's input: the document, `steps`, the step and its
# `inputs`. A --set value is capped like a spec file: the document nests MAX_DEPTH at most.
_INPUT_DEPTH = 4


def _override_value(raw: str, shown: str) -> Any:
    def not_json(name: str) -> Any:
        raise ValueError(name)

    def whole(text: str) -> int:
        limit = sys.get_int_max_str_digits()
        if len(text.lstrip("-")) > limit:
            raise _BadOverride(f"{shown}: the value is a number with more than {limit:,} "
                               "digits", "quote it (\"…\") to mean the text")
        return int(text)

    try:
        return json.loads(raw, parse_constant=not_json, parse_int=whole)
    except RecursionError:  # far deeper than MAX_DEPTH
        raise _BadOverride(f"{shown}: the value nests more than {MAX_DEPTH} levels deep",
                           "flatten the nested lists and mappings") from None
    except ValueError:  # NaN, Infinity, and anything that is not JSON: the text itself
        return raw


def _depth(value: Any) -> int:
    """Levels of lists and mappings in ``value``, 0 for a scalar. Not recursive: the value
    may nest deeper than Python's recursion limit allows."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _apply_overrides(data: dict[str, Any], overrides: list[str], doc: Document
                     ) -> list[Problem]:
    """``--set id.field=value``: replace (or add) one input of one step. The value is JSON
    when it reads as JSON (``3``, ``true``, ``[1, 2]``, ``"007"``), else the text as it is
    (``yes``, ``2024-01-01`` and ``0x10`` stay text, unlike in YAML)."""
    problems = []
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    assert isinstance(steps, list)
    for override in overrides:
        try:
            _apply_override(steps, override, doc)
        except _BadOverride as exc:
            problems.append(Problem(str(exc), file="--set", fix=exc.fix))
    return problems


def _shown_override(override: str) -> str:
    return quote_name(override) if is_utf8(override) else f"'{as_bytes(override)}'"


def _apply_override(steps: list[Any], override: str, doc: Document) -> None:
    shown = _shown_override(override)
    target, sep, raw_value = override.partition("=")
    step_id, dot, field = target.partition(".")
    if not sep or not dot or not step_id or not field:
        raise _BadOverride(f"{shown} is not of the form id.field=value")
    if not is_utf8(override):
        part = "the value" if not is_utf8(raw_value) else "the step id or field"
        raise _BadOverride(f"{shown}: {part} is not valid UTF-8", "give the text in UTF-8 "
                           "(check the encoding of the terminal or the script that passed it)")
    *parents, leaf = field.split(".")
    if "" in (*parents, leaf):
        raise _BadOverride(f"{shown}: an empty field name in {quote_name(field)}",
                           "separate the names of nested fields with single dots: "
                           "id.field.sub=…")
    value = _override_value(raw_value, shown)
    depth = _INPUT_DEPTH + len(parents) + _depth(value)
    if depth > MAX_DEPTH:
        raise _BadOverride(f"{shown}: the value nests {depth} levels deep in the spec, more "
                           f"than {MAX_DEPTH}", "flatten the nested lists and mappings")
    matches = [i for i, s in enumerate(steps)
               if isinstance(s, dict) and _raw_step_id(s, i) == step_id]
    if not matches:
        ids = [_raw_step_id(s, i) for i, s in enumerate(steps)]
        raise _BadOverride(f"{shown}: no step {quote_name(step_id)} in {doc.file}",
                           did_you_mean(step_id, ids))
    inputs = steps[matches[0]].setdefault("inputs", {})
    if not isinstance(inputs, dict):
        raise _BadOverride(f"{shown}: the step's inputs are not a mapping")
    node = inputs
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise _BadOverride(f"{shown}: {quote_name(part)} is not a mapping")
    node[leaf] = value
    doc.overridden[("steps", matches[0], "inputs", *parents, leaf)] = override
