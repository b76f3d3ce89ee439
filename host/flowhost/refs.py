"""References inside step inputs and check arguments, parsed once and resolved fast.

``$id.field.sub.0`` as a whole value keeps its JSON type; ``${id.field}`` inside a longer
string interpolates (a string that is exactly one ``${…}`` keeps the type too); ``$$`` is a
literal ``$``. Namespaces besides step ids: ``env``, ``secret`` and, inside a fallback,
``inputs`` (the primary plugin's resolved inputs).

Values are compiled into a small tree (``Const | Ref | Template | CDict | CList``) at
planning time so that resolving a step's inputs at run time is a few dict lookups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

NAMESPACES = frozenset({"env", "secret", "inputs"})
_SEGMENT = r"[A-Za-z0-9_-]+"
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_WHOLE = re.compile(rf"^\$({_NAME}(?:\.{_SEGMENT})*)$")
_BRACED = re.compile(r"\$\$|\$\{([^}]*)\}")
_EXPR = re.compile(rf"^{_NAME}(?:\.{_SEGMENT})*$")


class RefSyntaxError(ValueError):
    pass


class ResolveError(LookupError):
    """A reference that cannot be resolved at run time (the value is not there)."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference, ``$step.field`` or ``${env.X}``: its root and the path below it."""

    root: str  # a step id, or one of NAMESPACES
    path: tuple[str, ...]
    text: str  # as written, for messages

    def __str__(self) -> str:
        return self.text

    def resolve(self, scope: Scope) -> Any:
        if self.root not in NAMESPACES:
            # Fast path for the common case, a field of a dict output; anything else
            # (list indexes, errors) takes the general lookup.
            try:
                value = scope.outputs[self.root]
                for part in self.path:
                    value = value[part]
                return value
            except (KeyError, TypeError, IndexError):
                pass
        return lookup(self, scope)


@dataclass(frozen=True, slots=True)
class Template:
    """A text with ``${...}`` interpolations: its literal parts and references."""

    parts: tuple[str | Ref, ...]

    def resolve(self, scope: Scope) -> str:
        return "".join(
            part if isinstance(part, str) else _to_text(lookup(part, scope))
            for part in self.parts
        )


@dataclass(frozen=True, slots=True)
class CDict:
    """A mapping with references somewhere inside."""

    items: tuple[tuple[str, Compiled], ...]

    def resolve(self, scope: Scope) -> dict[str, Any]:
        resolved = {}  # a plain loop: a comprehension is one more call per step
        for key, value in self.items:
            resolved[key] = value.resolve(scope)
        return resolved


@dataclass(frozen=True, slots=True)
class CList:
    """A list with references somewhere inside."""

    items: tuple[Compiled, ...]

    def resolve(self, scope: Scope) -> list[Any]:
        return [value.resolve(scope) for value in self.items]


@dataclass(frozen=True, slots=True)
class Const:
    """A value without references."""

    value: Any

    def resolve(self, scope: Scope) -> Any:
        return self.value


Compiled = Union[Const, Ref, Template, CDict, CList]  # noqa: UP007 - runtime alias


def _make_ref(expr: str, text: str) -> Ref:
    if not _EXPR.match(expr):
        raise RefSyntaxError(
            f"'{text}' is not a valid reference: write $step.field or ${{step.field}} "
            "(letters, digits, '_' and '-', parts separated by '.'); write $$ for a literal $"
        )
    return _ref(expr, text)


def _ref(expr: str, text: str) -> Ref:
    """The reference ``expr``, which has the shape of one (``_EXPR``)."""
    path = expr.split(".")
    root = path[0]
    if root in ("env", "secret") and len(path) != 2:
        raise RefSyntaxError(f"'{text}': write ${{{root}.NAME}} with exactly one name")
    return Ref(root, tuple(path[1:]), text)


def compile_value(value: Any) -> Compiled:
    """Parse every reference in ``value`` (any JSON-like data). Raises RefSyntaxError."""
    if isinstance(value, str):
        return _compile_str(value)
    if isinstance(value, dict):
        items: list[tuple[str, Compiled]] = []
        literal: dict[str, Any] | None = {}
        for key, item in value.items():
            name = key if type(key) is str else str(key)  # (str() is a call, for nothing)
            compiled = _compile_str(item) if type(item) is str else compile_value(item)
            items.append((name, compiled))
            if literal is not None:
                if type(compiled) is Const:
                    literal[name] = compiled.value
                else:
                    literal = None
        if literal is not None and len(literal) == len(items):
            return Const(literal)
        return CDict(tuple(items))
    if isinstance(value, list):
        listed = tuple(compile_value(item) for item in value)
        values = [item.value for item in listed if isinstance(item, Const)]
        return Const(values) if len(values) == len(listed) else CList(listed)
    return Const(value)


def _compile_str(text: str) -> Compiled:
    if "$" not in text:
        return Const(text)
    whole = _WHOLE.match(text)
    if whole:  # its group matches _EXPR
        return _ref(whole.group(1), text)
    parts: list[str | Ref] = []
    position = 0
    for match in _BRACED.finditer(text):
        parts.append(_literal(text[position : match.start()], text))
        if match.group(0) == "$$":
            parts.append("$")
        else:
            parts.append(_make_ref(match.group(1).strip(), match.group(0)))
        position = match.end()
    parts.append(_literal(text[position:], text))
    merged: list[str | Ref] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    if not any(isinstance(p, Ref) for p in merged):
        return Const("".join(p for p in merged if isinstance(p, str)))
    if len(merged) == 1 and isinstance(merged[0], Ref):
        return merged[0]
    return Template(tuple(merged))


def _literal(part: str, text: str) -> str:
    """Text between references; a ``${`` left in it was never closed."""
    if "${" in part:
        raise RefSyntaxError(f"'{text}' has a '${{' without its closing '}}': close it, or "
                             "write $${ for a literal '${'")
    return part


def iter_refs(compiled: Compiled, where: tuple[str | int, ...] = ()) -> Iterator[
    tuple[Ref, tuple[str | int, ...], bool]
]:
    """Every reference with the path where it sits and whether it keeps its type."""
    if isinstance(compiled, Ref):
        yield compiled, where, True
    elif isinstance(compiled, Template):
        for part in compiled.parts:
            if isinstance(part, Ref):
                yield part, where, False
    elif isinstance(compiled, CDict):
        for key, value in compiled.items:
            yield from iter_refs(value, (*where, key))
    elif isinstance(compiled, CList):
        for index, value in enumerate(compiled.items):
            yield from iter_refs(value, (*where, index))


@dataclass(slots=True)
class Scope:
    """What references resolve against during a run."""

    outputs: Mapping[str, Any]  # step id -> outputs of finished steps
    env: Mapping[str, str]
    inputs: Mapping[str, Any] | None = None  # the primary's inputs, inside a fallback


def lookup(ref: Ref, scope: Scope) -> Any:
    root = ref.root
    if root in {"env", "secret"}:
        name = ref.path[0]
        try:
            return scope.env[name]
        except KeyError:
            raise ResolveError(f"{ref.text}: environment variable {name} is not set") from None
    if root == "inputs":
        if scope.inputs is None:
            raise ResolveError(f"{ref.text}: $inputs exists only inside a fallback")
        value: Any = scope.inputs
    else:
        try:
            value = scope.outputs[root]
        except KeyError:
            raise ResolveError(f"{ref.text}: step '{root}' has no outputs") from None
    for index, part in enumerate(ref.path):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            where = ".".join((root, *ref.path[:index]))
            raise ResolveError(f"{ref.text}: {where} has no '{part}'") from None
    return value


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def resolve(compiled: Compiled, scope: Scope) -> Any:
    """The value of ``compiled`` in ``scope``; raises ResolveError when a value is missing."""
    return compiled.resolve(scope)


def secret_names(compiled: Compiled) -> set[str]:
    return {ref.path[0] for ref, _, _ in iter_refs(compiled) if ref.root == "secret"}
