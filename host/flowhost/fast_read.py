"""The fast paths of reading a spec, for plain data (no anchors, aliases, merges or tags, no
duplicate keys, no values YAML cannot read): the common subset of YAML read line by line
(``flowhost.yaml_subset``), else the values built straight from libyaml's events, and JSON
from ``json.loads``. They give the same data as the node tree of the slow path
(``flowhost.source``), in a fraction of the time; the lines are found only if a message
needs one. Anything else, or anything a fast path is not sure about, gives ``SLOW``: the
slow path reports it as it always did."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from flowhost import yaml_subset
from flowhost.yaml_common import (
    EXPONENT_NUMBER,
    MAX_DEPTH,
    SLOW,
    STR,
    Loader,
    plain,
    plain_key,
    resolve,
    standard_constructors,
)

_NO_KEY: Any = object()


def fast_yaml(text: str) -> Any:
    """The document's data read line by line (``flowhost.yaml_subset``), else built from
    libyaml's events; or ``SLOW``."""
    if not standard_constructors():
        return SLOW
    data = yaml_subset.read(text)
    if data is not SLOW:
        return data
    try:
        loader = Loader(text)
    except Exception:  # e.g. a text that cannot be encoded: the slow path says so
        return SLOW
    try:
        get: Callable[[], Any] = loader.get_event
        events = yaml.events
        if (get().__class__ is not events.StreamStartEvent
                or get().__class__ is not events.DocumentStartEvent):
            return SLOW  # an empty file
        data = _from_events(get)
        if data is SLOW or (get().__class__ is not events.DocumentEndEvent
                             or get().__class__ is not events.StreamEndEvent):
            return SLOW  # more than one document
        return data
    except Exception:  # malformed: the slow path reports it, located
        return SLOW
    finally:
        loader.dispose()


def _from_events(get: Callable[[], Any]) -> Any:
    """The value of the document whose events ``get`` gives, or ``SLOW``."""
    resolvers = Loader.yaml_implicit_resolvers  # by first character
    events = yaml.events
    scalar_event = events.ScalarEvent
    mapping_start, sequence_start = events.MappingStartEvent, events.SequenceStartEvent
    mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
    exponent, str_tag, no_key = EXPONENT_NUMBER, STR, _NO_KEY
    resolved: dict[str, str] = {}  # plain text -> its tag, for the texts that repeat
    # The list or mapping being read (None: the document itself), the key waiting for its
    # value in it, and the same of each list or mapping around it.
    container: Any = None
    is_mapping = False
    key: Any = no_key
    around: list[tuple[Any, bool, Any]] = []
    value: Any
    while True:
        event = get()
        kind = event.__class__
        if kind is scalar_event:
            if event.tag is not None or event.anchor is not None:
                return SLOW
            value = event.value
            tag = str_tag
            if event.implicit[0]:  # plain: what YAML 1.1 makes of the text
                tag = resolved.get(value) or (
                    resolve(value, resolved) if value[:1] in resolvers else str_tag)
            if is_mapping and key is no_key:
                key = value if tag is str_tag else plain_key(tag, value)
                if key is SLOW:
                    return SLOW
                continue
            if tag is not str_tag:
                value = plain(tag, value)
                if value is SLOW:
                    return SLOW
            elif not event.style and exponent.match(value):
                value = float(value)
        elif kind is mapping_start or kind is sequence_start:
            if (event.tag is not None or event.anchor is not None or len(around) >= MAX_DEPTH
                    or (is_mapping and key is no_key)):  # a list or mapping as a key
                return SLOW
            around.append((container, is_mapping, key))
            container, is_mapping, key = {} if kind is mapping_start else [], (
                kind is mapping_start), no_key
            continue
        elif kind is mapping_end or kind is sequence_end:
            value = container
            container, is_mapping, key = around.pop()
        else:  # an alias
            return SLOW
        if container is None:
            break
        if not is_mapping:
            container.append(value)
        elif key in container:
            return SLOW  # a duplicate key
        else:
            container[key] = value
            key = no_key
    return value


# What YAML reads differently from JSON, or refuses, in a text that is valid JSON: characters
# outside YAML's printable set (and line breaks JSON does not know: NEL, LS, PS, or a BOM),
# an escaped surrogate (`"\\ud83d\\ude00"`), a key longer than libyaml looks back for its ':'.
# (Kept as text, compiled into ``re``'s cache when a JSON spec is first read: compiling these
# ranges takes ~5 ms, which every process would pay at import.)
_YAML_ODD = ("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
             "\U00010000-\U0010ffff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_KEY_END = re.compile(r'"[ \t\r\n]*:')  # a key's closing quote and its ':' (or a `\":` in a text)
_LONG_KEY = 80  # characters, 6 bytes at most each as written (`\u00e9`): far below 1,024


def fast_json(text: str) -> Any:
    """``json.loads`` of a JSON document whose YAML reading (the slow path's) is certainly
    the same data without a problem, or ``SLOW``."""
    written = text.strip(" \r\n")  # a tab before or after it: YAML refuses it
    if (written[:1] != "{" or written[-1:] != "}" or re.search(_YAML_ODD, text)
            or ("\\u" in text and _ESCAPED_SURROGATE.search(text))):
        return SLOW
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, NaN, a number too long: the slow path
        return SLOW
    ends = _KEY_END.findall(text)
    if any(len(end) > 2 for end in ends) and any(
            len(end) > 32 or "\n" in end or "\r" in end for end in ends):
        return SLOW  # YAML wants a key and its ':' on one line, close together
    # Each key is one of `ends`, which may also count a `\":` inside a text: as many keys in
    # the data as `ends` means that json.loads dropped no duplicate.
    if _json_keys(data) != len(ends):
        return SLOW
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _json_keys(data: Any) -> int:
    """How many keys the mappings of ``data`` have; -1 when it nests more than MAX_DEPTH
    levels deep or has a long key. Not recursive."""
    keys = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return -1
        if type(value) is dict:
            keys += len(value)
            if any(len(key) > _LONG_KEY for key in value):
                return -1
            children = value.values()
        else:
            children = value
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return keys
