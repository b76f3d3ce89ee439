"""Loading a spec file into the models of ``flowhost.spec``, every problem located at its
file, line, step and field, so that the message of a bad spec points at what to change.

Loading validates the shape of each step on its own, so one malformed step does not hide
the problems of the others; the valid part of a spec that does not load still goes through
the other checks (``SpecError.partial``). Everything that needs the plugins' schemas
(references, types, cycles) is checked afterwards by ``flowhost.static``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from flowhost.problems import Problem, SpecError, did_you_mean, shorten
from flowhost.source import Document, PathKey, load_document, parse_document
from flowhost.spec import MAX_DELAY_S, MAX_MULTIPLIER, MAX_TIMEOUT_S, Step, Workflow, raw_step_id
from flowhost.spec_overrides import apply_overrides, steps_read_by


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


# How flowhost.static_graph words a cycle: "dependency cycle: a → b → a".
CYCLE = "dependency cycle: "


def _cycle_origin(message: str, doc: Document) -> str:
    """A cycle is reported at its first step, but the reference that closes it may come from
    a ``--set`` on any of its steps: name those, or the user looks for it in the file."""
    members = set(message.removeprefix(CYCLE).split(" → "))
    closing = [override for override in dict.fromkeys(doc.overridden.values())
               if override.partition(".")[0] in members and steps_read_by(override) & members]
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
        problems += apply_overrides(data, overrides, doc)
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
                problems += _located(exc, doc, ("steps", index), raw_step_id(raw, index))
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
    raw_ids = [raw_step_id(raw, i) for i, raw in enumerate(steps_raw)] if isinstance(
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
