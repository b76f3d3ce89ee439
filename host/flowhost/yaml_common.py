"""What every way of reading a spec shares: the loader, YAML's tags, how deep a spec may
nest, and what YAML 1.1 makes of a plain scalar (as PyYAML's SafeLoader reads it), for the
fast paths that read scalars themselves."""

from __future__ import annotations

import re
from typing import Any

import yaml

# libyaml's parser is about 10x faster; PyYAML falls back to pure Python without it.
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_DEPTH = 100  # levels of lists and mappings a spec may nest
SLOW: Any = object()  # what a fast path gives for a document it leaves to the slow path

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
NULL = "tag:yaml.org,2002:null"
BOOL = "tag:yaml.org,2002:bool"
FLOAT = "tag:yaml.org,2002:float"
VALUE = "tag:yaml.org,2002:value"
MERGE = "tag:yaml.org,2002:merge"
EXPONENT_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE][-+]?[0-9]+$")
# The plain ints and floats whose value is what int() and float() make of the text (YAML's
# own constructors also read `_`, octal, hex, base 60, .inf and .nan: those go the slow way).
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,40})")
_PLAIN_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?")
_BOOL_VALUES: dict[str, bool] = yaml.constructor.SafeConstructor.bool_values


def standard_constructors() -> bool:
    """Whether the loader reads nulls, booleans, ints and floats as PyYAML does by default
    (the fast path reads them itself)."""
    constructors = Loader.yaml_constructors
    safe = yaml.constructor.SafeConstructor
    return (constructors.get(NULL) is safe.construct_yaml_null
            and constructors.get(BOOL) is safe.construct_yaml_bool
            and constructors.get(INT) is safe.construct_yaml_int
            and constructors.get(FLOAT) is safe.construct_yaml_float
            and not Loader.yaml_path_resolvers and None not in Loader.yaml_implicit_resolvers)


def resolve(text: str, resolved: dict[str, str]) -> str:
    """The tag YAML gives the plain scalar ``text`` (remembered in ``resolved`` if short)."""
    tag = STR
    for candidate, pattern in Loader.yaml_implicit_resolvers.get(text[0] if text else "", ()):
        if pattern.match(text):
            tag = candidate
            break
    if len(text) < 64:
        resolved[text] = tag
    return tag


def plain(tag: str, text: str) -> Any:
    """The value of a plain scalar that YAML resolves to ``tag`` (not str), or ``SLOW``."""
    if tag == NULL:
        return None
    if tag == BOOL:
        return _BOOL_VALUES[text.lower()]
    if tag == INT and _PLAIN_INT.fullmatch(text):
        return int(text)
    if tag == FLOAT and _PLAIN_FLOAT.fullmatch(text):
        return float(text)
    return SLOW  # a merge key, a date, 0x…, .inf: the slow path reads those


def plain_key(tag: str, text: str) -> Any:
    """A plain key as the slow path reads it, or ``SLOW``."""
    if tag == VALUE:
        return "="
    value = plain(tag, text)
    return SLOW if value is SLOW else str(value)
