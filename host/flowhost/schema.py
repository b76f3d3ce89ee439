"""Just enough JSON Schema to type-check references between steps before a run.

Plugins describe their inputs and outputs as JSON Schema (pydantic's
``model_json_schema()`` locally, ``ListPlugins`` remotely), so the static checks work the
same for both. Unknown or open-ended schemas are treated as "anything goes": the check
only rejects what is certainly wrong; the plugin's own model validates again at run time.
"""

from __future__ import annotations

import re
from typing import Any

Schema = dict[str, Any]
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})


def deref(schema: Any, root: Schema) -> Schema:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _branches(schema: Schema, root: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            result: list[Schema] = []
            for branch in schema[key]:
                result += _branches(deref(branch, root), root)
            return result
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return _branches(deref(schema["allOf"][0], root), root)
    return [schema]


def json_types(schema: Schema, root: Schema) -> frozenset[str] | None:
    """The JSON types a value of ``schema`` may have; None when unknown (anything)."""
    types: set[str] = set()
    for branch in _branches(deref(schema, root), root):
        declared = branch.get("type")
        if isinstance(declared, str):
            types.add(declared)
        elif isinstance(declared, list):
            types.update(t for t in declared if isinstance(t, str))
        elif "const" in branch or "enum" in branch:
            values = [branch["const"]] if "const" in branch else list(branch["enum"] or [])
            types.update(_type_of(v) for v in values)
        elif "properties" in branch:
            types.add("object")
        else:
            return None
    return frozenset(types) or None


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def accepts(consumer: frozenset[str] | None, produced: frozenset[str] | None) -> bool:
    """Whether some value of the produced types can be accepted by the consumer."""
    if consumer is None or produced is None:
        return True
    widened = set(produced)
    if "integer" in widened:
        widened.add("number")
    return bool(widened & consumer)


class NoSuchField(LookupError):
    def __init__(self, part: str, known: list[str]) -> None:
        super().__init__(part)
        self.part = part
        self.known = known


def field_schema(schema: Schema, path: tuple[str, ...], root: Schema) -> Schema:
    """The schema of the value at ``path``; raises NoSuchField for a certainly-missing part."""
    current = deref(schema, root)
    for part in path:
        options = _branches(current, root)
        found: list[Schema] = []
        known: list[str] = []
        open_ended = False
        for branch in options:
            option = deref(branch, root)
            kind = option.get("type")
            if kind == "array" or "items" in option:
                if part.isdigit():
                    found.append(deref(option.get("items", {}), root))
                continue
            properties = option.get("properties")
            if isinstance(properties, dict) and part in properties:
                found.append(deref(properties[part], root))
                continue
            if isinstance(properties, dict):
                known += list(properties)
            extra = option.get("additionalProperties")
            if isinstance(extra, dict):
                found.append(deref(extra, root))
            elif extra is True or (kind in (None, "object") and not properties and extra is None):
                open_ended = True
        if found:
            current = found[0] if len(found) == 1 else {"anyOf": found}
        elif open_ended:
            return {}
        else:
            raise NoSuchField(part, known)
    return current


def input_fields(schema: Schema, root: Schema) -> tuple[dict[str, Schema], set[str], bool]:
    """(properties, required names, whether other names are accepted).

    Listed properties are taken as the complete set of inputs (a name outside them is
    almost always a typo, which pydantic would silently drop), unless
    ``additionalProperties`` says otherwise; a schema that lists none accepts anything."""
    schema = deref(schema, root)
    properties = schema.get("properties")
    required = set(schema.get("required") or [])
    extra = schema.get("additionalProperties")
    if not isinstance(properties, dict) or not properties:
        return {}, required, extra is not False
    return dict(properties), required, extra is True or isinstance(extra, dict)


def literal_error(value: Any, schema: Schema, root: Schema) -> str | None:
    """Why ``value`` does not fit ``schema``, or None when it does (lenient like pydantic)."""
    if not schema:
        return None
    if _plainly_fits(value, schema):
        return None
    import jsonschema  # imported when a literal needs it: a run without such values does not

    full = {**schema, "$defs": root.get("$defs", {})} if "$defs" in root else schema
    validator = jsonschema.Draft202012Validator(full)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    if isinstance(value, str) and _numeric_string_ok(value, schema, root):
        return None  # pydantic accepts "8080" for an int, so a quoted number is fine
    location = "".join(f"[{p!r}]" for p in error.absolute_path)
    return f"{location + ': ' if location else ''}{error.message}"


# Keywords that only annotate a schema (they accept any value), and the Python types that
# certainly are of a JSON type: pydantic's schema of a plain field such as `value: int = 0`
# is {"type": "integer", "title": ..., "default": 0}, and its literals are checked without
# building a validator.
_ANNOTATIONS = frozenset({"type", "title", "description", "default", "examples"})
_OF_TYPE: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "array": (list,), "object": (dict,),
}


def _plainly_fits(value: Any, schema: Schema) -> bool:
    """Whether ``value`` certainly fits ``schema``, a schema that says nothing but its type
    (False: ask the validator)."""
    kind = schema.get("type")
    return (isinstance(kind, str) and type(value) in _OF_TYPE.get(kind, ())
            and schema.keys() <= _ANNOTATIONS)


def _numeric_string_ok(value: str, schema: Schema, root: Schema) -> bool:
    types = json_types(schema, root) or frozenset()
    try:
        number = float(value)
    except ValueError:
        return False
    if "integer" in types and number.is_integer() and _INTEGER_TEXT.fullmatch(value):
        return True
    return "number" in types


# The text pydantic takes for an int: digits (with `_`), a sign, a zero fraction; no exponent.
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d(?:_?\d)*(?:\.0*)?\s*")
