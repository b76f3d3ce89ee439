"""The fastest way of reading a spec: the common subset of YAML, read line by line.

libyaml hands each event over as a Python object (with two marks): ~0.5 us an event, 13 of
them for a step such as `- {id: s1, plugin: noop, inputs: {value: $s0.value}}`. Most specs
are written with a few shapes only: `key: value` and `- item` lines, indented, with plain
or simply quoted scalars and one-line flow collections. Those are read here with a few
regular expressions, their scalars as ``flowhost.fast_read`` reads libyaml's events,
comments left out. Anything else (escapes, multi-line scalars, anchors, tags, `? keys`,
tabs, non-ASCII text, a key YAML would not take...) gives ``SLOW``, and the events path
reads the document.
"""

from __future__ import annotations

import re
from typing import Any

from flowhost.yaml_common import EXPONENT_NUMBER, SLOW, STR, Loader, plain, plain_key, resolve


class _Slow(Exception):
    """The document is not (certainly) in the subset: another path reads it."""


_DEEPEST = 50  # levels of lists and mappings the subset takes (the spec's limit is MAX_DEPTH)
_SUBSET_ODD = re.compile(r"[^\n\x20-\x7e]")  # tab, CR, control and non-ASCII characters
_COMMENT = re.compile(r" +#[^\n]*")
# A key as the subset takes it: short (libyaml looks back 1,024 characters for its ':').
_KEY_TEXT = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}+"
_ENTRY = re.compile(rf"({_KEY_TEXT}):(?: +(.+))?")  # `key:` or `key: value`, fullmatch
# A line not blank nor a comment, without the spaces after it: its indent, and its key and
# value (`key: value`, `key:`) or else its content (`- item`, a scalar) — one findall for the
# whole text, rather than a match for each line.
_LINE = re.compile(rf"^( *)(?:({_KEY_TEXT}):(?: +([^\n]*[^ \n]))?|([^ #\n](?:[^\n]*[^ \n])?))"
                   r" *$", re.MULTILINE)
# A plain scalar starts with none of YAML's indicators (`-` only before a letter or digit);
# in a block it goes on to the line's end, with no ': ' or ' #' in it (and may hold brackets:
# `${step.dir}/main.py`); in a flow collection it stops before ',' and brackets, and here
# has neither ':' nor '?' (whose meaning there differs between libyaml versions). Quotes
# and '\\' are left to libyaml. (Runs of characters, not an alternative for each one:
# several times faster to match.)
_PLAIN_START = r"(?:[A-Za-z0-9_$./+=~()^<]|-(?=[A-Za-z0-9_$.]))"
_BLOCK_CHAR = r"[A-Za-z0-9_$./+=~()^<>;!?@%&*,|\-\[\]{}]"
_FLOW_CHAR = r"[A-Za-z0-9_$./+=~()^<>;!@%&*|\-]"
_BLOCK_WORD = rf"(?:{_BLOCK_CHAR}++|:(?={_BLOCK_CHAR}))"
_BLOCK_PLAIN = re.compile(rf"{_PLAIN_START}{_BLOCK_WORD}*+(?: ++{_BLOCK_WORD}++)*+")
_QUOTED = r"\"[^\"\\]*\"|'[^']*'"  # without escapes: the text between the quotes as it is
_QUOTED_TEXT = re.compile(_QUOTED)
# The tokens of a one-line flow collection, each followed by its spaces: punctuation, a key
# with its ':', a plain or quoted scalar, else any one character (which no value is: the
# tokens cover the whole text, so nothing in it goes unread).
_FLOW_TOKENS = re.compile(
    rf"([{{}}\[\],]|{_KEY_TEXT}:(?= )|{_PLAIN_START}{_FLOW_CHAR}*+(?: ++{_FLOW_CHAR}++)*+"
    rf"|{_QUOTED}|.) *")
_MISSING: Any = object()


def read(text: str) -> Any:
    """The data of a document in the subset (its top level a mapping), or ``SLOW``."""
    if _SUBSET_ODD.search(text):
        return SLOW
    if " #" in text:
        # Comments after values go: out of quotes, ' #' starts one. Inside quotes (where it
        # does not), the cut leaves a quote open, which the subset does not read.
        text = _COMMENT.sub("", text)
    reader = _Reader(_LINE.findall(text))
    if not reader.count or not reader.lines[0][1]:
        return SLOW  # a top level that is not a mapping: the spec's checks say so
    try:
        data, end = reader.node(0, reader.indents[0], 1)
    except _Slow:
        return SLOW
    return data if end == reader.count else SLOW


class _Reader:
    """The lines of a document, without blank lines and comments (each one's indent and
    content), read as the blocks they make. Scalars are read once for each text: the keys,
    the values of lines and the values in flow collections each have a table (a text reads
    differently in each), which holds what the events path would make of them."""

    def __init__(self, lines: list[tuple[str, str, str, str]]) -> None:
        self.lines = lines  # (indent, key, value, content): _LINE's groups, '' for none
        self.indents = [len(line[0]) for line in lines]
        self.count = len(lines)
        self.resolved: dict[str, str] = {}  # plain text -> its tag, as libyaml's events are read
        self.keys: dict[str, Any] = {}  # as written -> the key
        self.values: dict[str, Any] = {}  # the rest of a line -> its value (not a collection)
        self.flow_keys: dict[str, Any] = {}  # a token (`key:`) -> the key
        self.flow_values: dict[str, Any] = {}  # a token -> its value

    # -- blocks ----------------------------------------------------------------------------
    def node(self, at: int, indent: int, depth: int) -> tuple[Any, int]:
        """The value starting with line ``at`` (at its column ``indent``), and the line
        after it."""
        _, name, written, content = self.lines[at]
        if name:
            if depth > _DEEPEST:
                raise _Slow
            return self.mapping(at, indent, name, written, depth)
        return self.inline(at, indent, content, depth)

    def inline(self, at: int, indent: int, content: str, depth: int) -> tuple[Any, int]:
        """The value starting on line ``at`` with ``content`` (at column ``indent``: after
        a `- `, the rest of the line), and the line after it."""
        if depth > _DEEPEST:
            raise _Slow
        first = content[0]
        if first in {"{", "["}:  # (no key starts so: not asked of _ENTRY)
            return self.flow(content, depth), at + 1
        if _is_item(content):
            return self.sequence(at, indent, content, depth)
        entry = _ENTRY.fullmatch(content)
        if entry is not None:
            name, written = entry.groups()
            return self.mapping(at, indent, name, written or "", depth)
        return self.value(content, depth), at + 1

    def mapping(self, at: int, indent: int, name: str, written: str, depth: int
                ) -> tuple[dict[Any, Any], int]:
        """The mapping whose first key and value (`''`: none on the line) are ``name`` and
        ``written``, on line ``at``."""
        result: dict[Any, Any] = {}
        lines, indents, count = self.lines, self.indents, self.count
        keys, values = self.keys, self.values
        while True:
            # (The tables are asked here first: a call for each key and value read before
            # would cost a tenth of the line.)
            key = keys.get(name, _MISSING)
            if key is _MISSING:
                key = self.key(name)
            if key in result:
                raise _Slow  # a duplicate key: the slow path reports it
            at += 1
            if written:
                value = values.get(written, _MISSING)
                result[key] = value if value is not _MISSING else self.value(written, depth)
            else:
                result[key], at = self.below(at, indent, depth, True)
            if at == count or indents[at] < indent:
                return result, at
            _, name, written, _ = lines[at]
            if indents[at] > indent or not name:
                raise _Slow

    def sequence(self, at: int, indent: int, content: str, depth: int
                 ) -> tuple[list[Any], int]:
        items: list[Any] = []
        lines, indents, count = self.lines, self.indents, self.count
        while True:
            rest = content[1:].lstrip(" ")
            if rest:  # `- value`, `- key: value`: the item starts on this line
                value, at = self.inline(at, indent + len(content) - len(rest), rest,
                                        depth + 1)
            else:
                value, at = self.below(at + 1, indent, depth, False)
            items.append(value)
            if at == count or indents[at] < indent:
                return items, at
            content = lines[at][3]
            if not content or not _is_item(content):
                if indents[at] == indent:  # the next key of the mapping around it
                    return items, at
                raise _Slow
            if indents[at] > indent:
                raise _Slow

    def below(self, at: int, indent: int, depth: int, after_key: bool) -> tuple[Any, int]:
        """The value on the lines after a `key:` (or `-`) at column ``indent``: a block
        indented more, or (after a key) a list at the key's own column; else None."""
        if at < self.count:
            column, content = self.indents[at], self.lines[at][3]
            if column > indent or (after_key and column == indent and content
                                   and _is_item(content)):
                return self.node(at, column, depth + 1)
        return None, at

    # -- scalars ---------------------------------------------------------------------------
    def key(self, written: str) -> Any:
        key = self.keys.get(written, _MISSING)
        if key is _MISSING:
            tag = _plain_tag(written, self.resolved)
            key = written if tag is STR else plain_key(tag, written)
            if key is SLOW:
                raise _Slow
            self.keys[written] = key
        return key

    def value(self, text: str, depth: int) -> Any:
        """The value written ``text`` on one line, after a `key: ` or a `- `."""
        value = self.values.get(text, _MISSING)
        if value is not _MISSING:
            return value
        first = text[0]
        if first in {"{", "["}:
            return self.flow(text, depth)
        if first in {'"', "'"}:
            if not _QUOTED_TEXT.fullmatch(text):
                raise _Slow
            value = text[1:-1]
        elif _BLOCK_PLAIN.fullmatch(text):
            value = _plain_value(text, self.resolved)
        else:
            raise _Slow
        self.values[text] = value
        return value

    # -- flow collections ------------------------------------------------------------------
    def flow(self, text: str, depth: int) -> Any:
        tokens = _FLOW_TOKENS.findall(text)
        try:
            value, end = self.flow_collection(tokens, 0, depth + 1)
        except IndexError:  # not closed
            raise _Slow from None
        if end != len(tokens):
            raise _Slow
        return value

    def flow_collection(self, tokens: list[str], at: int, depth: int) -> tuple[Any, int]:
        """The list or mapping opening at ``tokens[at]``, and the token after it."""
        if depth > _DEEPEST:
            raise _Slow
        is_mapping = tokens[at] == "{"
        closer = "}" if is_mapping else "]"
        mapping: dict[Any, Any] = {}
        items: list[Any] = []
        keys, values = self.flow_keys, self.flow_values
        key: Any = None
        at += 1
        if tokens[at] == closer:
            return (mapping if is_mapping else items), at + 1
        while True:
            if is_mapping:
                key = keys.get(tokens[at], _MISSING)
                if key is _MISSING:
                    key = self.flow_key(tokens[at])
                if key in mapping:
                    raise _Slow
                at += 1
            # (The table first, as in `mapping`; flow_item reads what is not in it.)
            value = values.get(tokens[at], _MISSING)
            if value is _MISSING:
                value, at = self.flow_item(tokens, at, depth)
            else:
                at += 1
            if is_mapping:
                mapping[key] = value
            else:
                items.append(value)
            token = tokens[at]
            if token == closer:
                return (mapping if is_mapping else items), at + 1
            if token != ",":
                raise _Slow
            at += 1

    def flow_key(self, written: str) -> Any:
        if written[-1] != ":" or len(written) < 2:
            raise _Slow  # not a key and its ':' (`{a}`, a trailing ',', ...)
        key = self.flow_keys[written] = self.key(written[:-1])
        return key

    def flow_item(self, tokens: list[str], at: int, depth: int) -> tuple[Any, int]:
        """The value starting at ``tokens[at]`` in a collection (not one in the table of
        values), and the token after it."""
        token = tokens[at]
        if token in {"{", "["}:
            return self.flow_collection(tokens, at, depth + 1)
        first = token[0]
        if first in {'"', "'"}:
            if len(token) < 2:  # a quote that is not closed
                raise _Slow
            value = token[1:-1]
        elif first in ",]}" or token[-1] == ":" or (
                len(token) == 1 and not _BLOCK_PLAIN.fullmatch(token)):
            raise _Slow  # punctuation, a key, or a character no plain scalar starts with
        else:
            value = _plain_value(token, self.resolved)
        self.flow_values[token] = value
        return value, at + 1


def _is_item(content: str) -> bool:
    return content[0] == "-" and content[1:2] in ("", " ")


def _plain_tag(text: str, resolved: dict[str, str]) -> str:
    """The tag YAML gives the plain scalar ``text``, as libyaml's events are read."""
    return resolved.get(text) or (
        resolve(text, resolved) if text[:1] in Loader.yaml_implicit_resolvers else STR)


def _plain_value(text: str, resolved: dict[str, str]) -> Any:
    """A plain scalar's value, as libyaml's events are read."""
    tag = _plain_tag(text, resolved)
    if tag is not STR:
        value = plain(tag, text)
        if value is SLOW:
            raise _Slow
        return value
    # (Only a text starting like a number can be one: most are not asked the pattern.)
    if text[0] in _NUMBER_START and EXPONENT_NUMBER.match(text):
        return float(text)
    return text


_NUMBER_START = frozenset("-0123456789")  # what EXPONENT_NUMBER starts with
