"""The slow path of reading a spec: libyaml's node tree, built into plain data with each
value's line, and every problem located (duplicate keys, values YAML cannot read, nesting
and alias expansion past the limits, JSON that is not JSON). ``flowhost.fast_read`` reads
the common case without it; this runs when the fast path gives way, and to find the lines
of a document the fast path read once a message needs them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from flowhost.document import Document, PathKey
from flowhost.problems import Problem, SpecError, quote, quote_name
from flowhost.yaml_common import (
    EXPONENT_NUMBER,
    INT,
    MAX_DEPTH,
    MERGE,
    STR,
    Loader,
)


def read_slowly(text: str, file: str) -> Document:
    """The slow path: the node tree, with each value's line, and every problem located."""
    is_json = file.lower().endswith(".json")
    if is_json:
        _check_json(text, file)
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem("the file is empty", file=file, fix="see examples/")])
        if "*" in text:  # else there is no alias
            _check_expansion(node, file)
        doc = Document(file=file, data=None)
        problems: list[Problem] = []
        doc.lines[()] = node.start_mark.line + 1
        doc.data = _build(node, (), doc, loader, problems, is_json)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_yaml_problem(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(f"malformed YAML/JSON: {exc}", file=file)]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return doc


_OPENERS = {"flow mapping": "{", "flow sequence": "["}


def _yaml_problem(exc: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """A YAML error where the cause is: the bracket that was never closed (YAML notices
    only later, where something else comes), or the tab that YAML cannot indent with."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    detail = " ".join(part for part in (exc.context, exc.problem) if part)
    at = exc.problem_mark
    if at is not None and 0 <= at.index < len(text) and text[at.index] == "\t":
        return Problem("a tab character: YAML indents with spaces only", file=file, line=line,
                       column=column, fix="replace the tabs with spaces")
    opened = exc.context_mark
    bracket = next((b for kind, b in _OPENERS.items() if kind in (exc.context or "")), None)
    if bracket is not None and opened is not None and at is not None and opened.line != at.line:
        closer = "}" if bracket == "{" else "]"
        return Problem(
            f"the '{bracket}' opened here is not closed (YAML noticed at line {at.line + 1}, "
            f"column {at.column + 1}: {exc.problem})", file=file, line=opened.line + 1,
            column=opened.column + 1, fix=f"add the missing '{closer}' (or a ',' between "
            "items) on this line or the next ones")
    return Problem(f"malformed YAML/JSON: {detail}", file=file, line=line, column=column)


def _check_json(text: str, file: str) -> None:
    """A ``.json`` file must be JSON: YAML (which reads it for the line numbers) would also
    take trailing commas, comments, unquoted keys and the like."""
    try:
        # Numbers are not converted: a number too long for Python is reported with its line
        # when the values are built.
        json.loads(text, parse_int=len, parse_float=len)
    except RecursionError:  # deeper than Python's limit, so far more than MAX_DEPTH
        raise _too_deep(file) from None
    except json.JSONDecodeError as exc:
        raise SpecError([Problem(f"invalid JSON: {exc.msg}", file=file, line=exc.lineno,
                                 column=exc.colno,
                                 fix="fix the JSON, or rename the file to .yaml to write "
                                 "YAML")]) from None


# A spec is a few hundred values; aliases may share parts of it (`retry: *std`), but each
# use repeats the anchor's whole value, so nested aliases grow exponentially ("billion
# laughs"). Both bounds are checked on the node graph, before anything is expanded.
MAX_ALIAS_VALUES = 1_000_000


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a node graph that refers to itself, nests too deeply or grows too much through
    aliases. Linear in the size of the text: each node is measured once."""
    sizes = _Sizes(file)
    values, _ = sizes.measure(root, 1)
    if values > sizes.written + MAX_ALIAS_VALUES:
        # Point at the smallest value that is too large on its own, following the largest.
        node = root
        while True:
            heavy = max(_children(node), default=None, key=sizes.values)
            if heavy is None or sizes.values(heavy) <= MAX_ALIAS_VALUES:
                break
            node = heavy
        raise SpecError([Problem(
            f"the spec expands to more than {MAX_ALIAS_VALUES:,} values through YAML aliases "
            f"(&anchor/*alias): each alias repeats its anchor's whole value, and the value "
            f"starting here expands to {sizes.values(node):,}", file=file,
            line=node.start_mark.line + 1, column=node.start_mark.column + 1,
            fix="use aliases for shared settings (e.g. `retry: *std`), not to nest copies of "
            "copies")])


class _Sizes:
    """How many values each list and mapping expands to, and how deep it nests."""

    def __init__(self, file: str) -> None:
        self.file = file
        # id(node) -> (values, depth: the levels of lists and mappings, itself included)
        self.measured: dict[int, tuple[int, int]] = {}
        self.open: set[int] = set()  # being measured: the current path
        self.written = 1  # values as written, an alias counting as one

    def values(self, node: yaml.Node) -> int:
        return self.measured.get(id(node), (1, 1))[0]

    def measure(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        known = self.measured.get(key)
        if known is None:
            if key in self.open:
                raise self._error(
                    "a YAML alias (*alias) is used inside its own anchor's value (&anchor), "
                    "so the value would contain itself without end", node,
                    "an alias can only refer to a value that is complete where it is used")
            if depth > MAX_DEPTH:
                raise _too_deep(self.file)
            self.open.add(key)
            children = _children(node)
            self.written += len(children)
            values, below = 1, 0
            for child in children:
                if isinstance(child, yaml.ScalarNode):
                    values += 1
                else:
                    child_values, child_depth = self.measure(child, depth + 1)
                    values += child_values
                    below = max(below, child_depth)
            self.open.discard(key)
            known = self.measured[key] = (values, below + 1)
        elif depth + known[1] - 1 > MAX_DEPTH:
            raise _too_deep(self.file)
        return known

    def _error(self, message: str, node: yaml.Node, fix: str) -> SpecError:
        return SpecError([Problem(message, file=self.file, line=node.start_mark.line + 1,
                                  column=node.start_mark.column + 1, fix=fix)])


def _too_deep(file: str) -> SpecError:
    return SpecError([Problem(f"the spec nests more than {MAX_DEPTH} levels deep", file=file,
                              fix="flatten the nested lists and mappings")])


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _build(
    node: yaml.Node, path: PathKey, doc: Document, loader: yaml.SafeLoader,
    problems: list[Problem], is_json: bool,
) -> Any:
    """The value of ``node``, whose line the caller put in ``doc.lines`` (at ``path``)."""
    if isinstance(node, yaml.MappingNode):
        if len(path) >= MAX_DEPTH:
            raise _too_deep(doc.file)
        pairs = node.value
        if any(key_node.tag == MERGE for key_node, _ in pairs):
            # `<<: *anchor` merges the anchor's keys in; the mapping's own override them.
            merged, pairs = _pairs(node)
            own = {_key(key_node, loader, doc.file, problems) for key_node, _ in pairs}
            inherited: dict[str, tuple[yaml.Node, yaml.Node]] = {}
            for key_node, value_node in merged:
                inherited[_key(key_node, loader, doc.file, problems)] = (key_node, value_node)
            pairs = [pair for key, pair in inherited.items() if key not in own] + pairs
        result: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key = _key(key_node, loader, doc.file, problems)
            child = (*path, key)
            if key in result:
                problems.append(
                    Problem(
                        f"duplicate key {quote_name(key)}",
                        file=doc.file,
                        line=key_node.start_mark.line + 1,
                        fix="each key may appear once in a mapping",
                    )
                )
            doc.lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, doc, loader, problems, is_json)
        return result
    if isinstance(node, yaml.SequenceNode):
        if len(path) >= MAX_DEPTH:
            raise _too_deep(doc.file)
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            doc.lines.setdefault(child, item.start_mark.line + 1)
            items.append(_build(item, child, doc, loader, problems, is_json))
        return items
    if is_json and isinstance(node, yaml.ScalarNode) and not node.style and (
            node.value in _NOT_JSON):
        # Python's json module takes these too; YAML would read them as strings.
        problems.append(Problem(f"invalid JSON: {node.value} is not a JSON value", file=doc.file,
                                line=node.start_mark.line + 1, column=node.start_mark.column + 1,
                                fix="JSON numbers are finite; quote it to mean a string"))
    if node.tag == STR and isinstance(node, yaml.ScalarNode):
        if not node.style and EXPONENT_NUMBER.match(node.value):
            # YAML 1.1 (PyYAML) reads `1e5` and `1.5e3` as strings; JSON and YAML 1.2 say
            # number.
            return float(node.value)
        return node.value  # what the str constructor returns, without its bookkeeping
    value = _construct(node, loader, doc.file, problems)
    return None if value is _UNREAD else value


_NOT_JSON = frozenset({"NaN", "Infinity", "-Infinity"})


def _key(node: yaml.Node, loader: yaml.SafeLoader, file: str, problems: list[Problem]) -> str:
    if node.tag == "tag:yaml.org,2002:value":  # a plain `=`, which flatten_mapping allowed
        return "="
    if node.tag == STR and isinstance(node, yaml.ScalarNode):
        return str(node.value)  # the common key, read as the str constructor would
    key = _construct(node, loader, file, problems)
    if key is _UNREAD:  # reported: the text as written stands for it
        return str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    return key if isinstance(key, str) else str(key)


# What PyYAML's constructors raise for a scalar they cannot read (`!!int nope` is a
# ValueError, `!!bool maybe` a KeyError, `!!timestamp nope` an AttributeError, ...).
_UNREADABLE = (ValueError, LookupError, AttributeError, TypeError, ArithmeticError)
_EXPECTED = {
    INT: "a whole number such as 42, -7, 0x2A or 0b101 (a leading 0 means octal)",
    "tag:yaml.org,2002:float": "a number such as 1.5, -2e3, .inf or .nan",
    "tag:yaml.org,2002:bool": "true or false (or yes/no, on/off)",
    "tag:yaml.org,2002:timestamp": "a date such as 2024-01-31, or a date and time such as "
    "2024-01-31T12:00:00Z",
}

_NOUNS = {"!!timestamp": "a date", "!!int": "an integer", "!!float": "a number",
          "!!bool": "a boolean"}


_UNREAD = object()  # what _construct gives for a value it could not read


def _construct(node: yaml.Node, loader: yaml.SafeLoader, file: str,
               problems: list[Problem]) -> Any:
    """The node's value; ``_UNREAD``, and a problem at its line, when YAML cannot read it."""
    try:
        value = loader.construct_object(node, deep=True)
    except _UNREADABLE as exc:
        # The constructor left the node marked as in progress: an alias of it would then
        # read as a recursive node instead of reporting the same problem.
        loader.recursive_objects.pop(node, None)
        _report(problems, _unreadable(node, loader, exc, file))
        return _UNREAD
    if isinstance(value, int) and value.bit_length() > _SAFE_INT_BITS and not _printable(value):
        _report(problems, _too_many_digits(node, file))  # 0x… with thousands of digits
        return _UNREAD
    return value


def _report(problems: list[Problem], problem: Problem) -> None:
    if problem not in problems:  # an alias repeats its anchor's problem
        problems.append(problem)


# Below this many bits an int has fewer than 4,300 digits, Python's default limit for str().
_SAFE_INT_BITS = 14_000


def _printable(value: int) -> bool:
    try:
        str(value)
    except ValueError:
        return False
    return True


def _unreadable(node: yaml.Node, loader: yaml.SafeLoader, exc: Exception, file: str
                ) -> Problem:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    if node.tag == INT and len(text) > sys.get_int_max_str_digits():
        return _too_many_digits(node, file)
    expected = _EXPECTED.get(node.tag)
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    # Without an explicit tag, YAML read a plain value as a date (or number) it is not.
    implicit = isinstance(node, yaml.ScalarNode) and node.tag == loader.resolve(  # type: ignore[no-untyped-call]
        yaml.ScalarNode, text, (not node.style, bool(node.style)))
    if implicit:
        what = _NOUNS.get(tag, f"a {tag} value")
        return Problem(f"{quote(text)} reads as {what} in YAML, but is not a valid one "
                       f"({exc})", file=file, line=line, column=column,
                       fix=f"quote it to mean the text, or write {expected or 'a valid value'}")
    return Problem(f"{quote(text)} is not a valid {tag} value"
                   + (f": expected {expected}" if expected else ""),
                   file=file, line=line, column=column,
                   fix=f"correct the value, or remove the tag {tag}")


def _too_many_digits(node: yaml.Node, file: str) -> Problem:
    limit = sys.get_int_max_str_digits()
    return Problem(f"a number with more than {limit:,} digits: too long to read",
                   file=file, line=node.start_mark.line + 1,
                   column=node.start_mark.column + 1,
                   fix="quote it to mean the text, or use a shorter number")


def _pairs(node: yaml.MappingNode) -> tuple[list[tuple[yaml.Node, yaml.Node]],
                                             list[tuple[yaml.Node, yaml.Node]]]:
    """The pairs a mapping merges in with ``<<`` (a later one overriding an earlier one),
    and its own. Like PyYAML's ``flatten_mapping``, but leaves the (maybe shared) node as
    it is, so that every use of an anchor reads the same."""
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    own: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE:
            own.append((key_node, value_node))
            continue
        many = isinstance(value_node, yaml.SequenceNode)
        sources = value_node.value if many else [value_node]
        # Of several mappings merged, the first one's keys win: it goes last.
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "expected a mapping or list of mappings for merging, but found "
                    f"{source.id}", source.start_mark)
            inner_merged, inner_own = _pairs(source)
            merged += inner_merged + inner_own
    return merged, own
