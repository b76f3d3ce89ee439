"""``--set id.field=value`` (and the API's ``overrides``): one input of one step given on
the command line. Overrides are applied to the document's data before its steps are
validated, so that a value given by ``--set`` is checked like one written in the file, and
each is remembered in the document, so that a problem with its value names the ``--set``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from flowhost.problems import Problem, as_bytes, did_you_mean, is_utf8, quote_name
from flowhost.refs import RefSyntaxError, compile_value, iter_refs
from flowhost.source import Document
from flowhost.spec import raw_step_id
from flowhost.yaml_common import MAX_DEPTH


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


def apply_overrides(data: dict[str, Any], overrides: list[str], doc: Document
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
               if isinstance(s, dict) and raw_step_id(s, i) == step_id]
    if not matches:
        ids = [raw_step_id(s, i) for i, s in enumerate(steps)]
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


def steps_read_by(override: str) -> set[str]:
    """The steps whose outputs the value of an (applied, so well-formed) ``--set`` reads."""
    try:
        value = _override_value(override.partition("=")[2], override)
        return {ref.root for ref, _, _ in iter_refs(compile_value(value))}
    except (_BadOverride, RefSyntaxError):
        return set()
