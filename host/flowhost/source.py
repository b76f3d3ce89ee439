"""Read a YAML or JSON document into plain Python data, remembering each value's line.

Pydantic validation errors and reference errors carry a path such as
``("steps", 2, "inputs", "project_path")``; ``Document.line_of`` turns it into the line the
user should look at.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from flowhost.problems import Problem, SpecError, quote, quote_name, shorten

PathKey = tuple[str | int, ...]

# libyaml's parser is about 10x faster; PyYAML falls back to pure Python without it.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Document:
    """The data of a spec file, and the line of each value (``lines``, by path).

    The lines are only needed for messages: a document read the fast way (``text`` given,
    ``lines`` not) finds them by reading its text again the slow way, the first time they
    are asked for."""

    __slots__ = ("_lines", "_text", "data", "file", "overridden")

    def __init__(self, file: str, data: Any, lines: dict[PathKey, int] | None = None,
                 overridden: dict[PathKey, str] | None = None, *,
                 text: str | None = None) -> None:
        self.file = file
        self.data = data
        self._lines = lines if lines is not None else None if text is not None else {}
        self._text = text
        self.overridden: dict[PathKey, str] = {} if overridden is None else overridden

    def __repr__(self) -> str:
        return f"Document(file={self.file!r}, data={self.data!r})"

    def __eq__(self, other: object) -> bool:  # as the dataclass it was compared
        if not isinstance(other, Document):
            return NotImplemented
        return (self.file, self.data, self.lines, self.overridden) == (
            other.file, other.data, other.lines, other.overridden)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    @property
    def lines(self) -> dict[PathKey, int]:
        if self._lines is None:
            self._lines = _lines_of(self._text or "", self.file)
        return self._lines

    def set_by(self, path: Sequence[str | int]) -> str | None:
        """The ``--set`` that gave the value at (or in, or around) an input ``path``."""
        key = tuple(path)
        if len(key) < 4:  # ("steps", i, "inputs", name) at least: not a whole step
            return None
        for where, override in self.overridden.items():
            if where[:len(key)] == key or key[:len(where)] == where:
                return override
        return None

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        lines = self.lines
        key = tuple(path)
        while key:
            line = lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return lines.get(())


MAX_SPEC_CHARS = 16 * 1024 * 1024  # /dev/zero, or a log given by mistake, must not fill memory


def load_document(path: str | Path) -> Document:
    file = str(path)
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(MAX_SPEC_CHARS + 1)
    except FileNotFoundError:
        raise SpecError([Problem("file not found", file=file)]) from None
    except IsADirectoryError:
        raise SpecError([Problem("is a directory, not a workflow file", file=file)]) from None
    except OSError as exc:  # its text without the path again: the problem names the file
        if exc.errno == errno.ENAMETOOLONG:
            file = shorten(file)
        why = exc.strerror or str(exc)
        raise SpecError([Problem(f"cannot read the file: {why}", file=file)]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(f"cannot read the file: {exc}", file=file)]) from None
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError([Problem(f"larger than {MAX_SPEC_CHARS:,} characters: not a workflow "
                                 "spec flowhost reads", file=file)])
    return parse_document(text, file)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC paused meanwhile (as it was, after). Reading and checking a spec
    allocates many small objects that all stay alive: the collections would scan them again
    and again, which makes planning grow faster than the spec."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def parse_document(text: str, file: str = "<spec>") -> Document:
    with paused_gc():
        data = _fast_json(text) if file.lower().endswith(".json") else _fast_yaml(text)
        if data is not _SLOW:
            return Document(file=file, data=data, text=text)
        return _parse(text, file)


def _lines_of(text: str, file: str) -> dict[PathKey, int]:
    """The lines of a document that the fast path read: the slow path's, which would find no
    problem (or the fast path would not have read it); {} if it finds one all the same."""
    with paused_gc():
        try:
            return _parse(text, file).lines
        except SpecError:  # pragma: no cover - the fast path gives way on any problem
            return {}


def _parse(text: str, file: str) -> Document:
    """The slow path: the node tree, with each value's line, and every problem located."""
    is_json = file.lower().endswith(".json")
    if is_json:
        _check_json(text, file)
    loader = _Loader(text)
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
MAX_DEPTH = 100


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
        if any(key_node.tag == _MERGE for key_node, _ in pairs):
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
    if node.tag == _STR and isinstance(node, yaml.ScalarNode):
        if not node.style and _EXPONENT_NUMBER.match(node.value):
            # YAML 1.1 (PyYAML) reads `1e5` and `1.5e3` as strings; JSON and YAML 1.2 say
            # number.
            return float(node.value)
        return node.value  # what the str constructor returns, without its bookkeeping
    value = _construct(node, loader, doc.file, problems)
    return None if value is _UNREAD else value


_NOT_JSON = frozenset({"NaN", "Infinity", "-Infinity"})
_STR = "tag:yaml.org,2002:str"
_EXPONENT_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE][-+]?[0-9]+$")
_MERGE = "tag:yaml.org,2002:merge"


def _key(node: yaml.Node, loader: yaml.SafeLoader, file: str, problems: list[Problem]) -> str:
    if node.tag == "tag:yaml.org,2002:value":  # a plain `=`, which flatten_mapping allowed
        return "="
    if node.tag == _STR and isinstance(node, yaml.ScalarNode):
        return str(node.value)  # the common key, read as the str constructor would
    key = _construct(node, loader, file, problems)
    if key is _UNREAD:  # reported: the text as written stands for it
        return str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    return key if isinstance(key, str) else str(key)


# What PyYAML's constructors raise for a scalar they cannot read (`!!int nope` is a
# ValueError, `!!bool maybe` a KeyError, `!!timestamp nope` an AttributeError, ...).
_UNREADABLE = (ValueError, LookupError, AttributeError, TypeError, ArithmeticError)
_INT = "tag:yaml.org,2002:int"
_EXPECTED = {
    _INT: "a whole number such as 42, -7, 0x2A or 0b101 (a leading 0 means octal)",
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
    if node.tag == _INT and len(text) > sys.get_int_max_str_digits():
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
        if key_node.tag != _MERGE:
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


# -- the fast path -------------------------------------------------------------------------
# Most specs are plain data: no anchors, aliases, merges or tags, no duplicate keys, no
# values YAML cannot read. For those, building the values straight from libyaml's events
# (and JSON from json.loads) gives the same data as the node tree, in about half the time;
# the lines are found only if a message needs one. Anything else — or anything the fast path
# is not sure about — is left to the slow path, which reports it as it always did.

_SLOW: Any = object()  # what a fast path gives for a document it leaves to the slow path
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_VALUE = "tag:yaml.org,2002:value"
# The plain ints and floats whose value is what int() and float() make of the text (YAML's
# own constructors also read `_`, octal, hex, base 60, .inf and .nan: those go the slow way).
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,40})")
_PLAIN_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?")
_BOOL_VALUES: dict[str, bool] = yaml.constructor.SafeConstructor.bool_values
_NO_KEY: Any = object()


def _standard_constructors() -> bool:
    """Whether the loader reads nulls, booleans, ints and floats as PyYAML does by default
    (the fast path reads them itself)."""
    constructors = _Loader.yaml_constructors
    safe = yaml.constructor.SafeConstructor
    return (constructors.get(_NULL) is safe.construct_yaml_null
            and constructors.get(_BOOL) is safe.construct_yaml_bool
            and constructors.get(_INT) is safe.construct_yaml_int
            and constructors.get(_FLOAT) is safe.construct_yaml_float
            and not _Loader.yaml_path_resolvers and None not in _Loader.yaml_implicit_resolvers)


def _fast_yaml(text: str) -> Any:
    """The document's data read line by line (``_subset``), else built from libyaml's
    events; or ``_SLOW``."""
    if not _standard_constructors():
        return _SLOW
    data = _subset(text)
    if data is not _SLOW:
        return data
    try:
        loader = _Loader(text)
    except Exception:  # e.g. a text that cannot be encoded: the slow path says so
        return _SLOW
    try:
        get: Callable[[], Any] = loader.get_event
        events = yaml.events
        if (get().__class__ is not events.StreamStartEvent
                or get().__class__ is not events.DocumentStartEvent):
            return _SLOW  # an empty file
        data = _from_events(get)
        if data is _SLOW or (get().__class__ is not events.DocumentEndEvent
                             or get().__class__ is not events.StreamEndEvent):
            return _SLOW  # more than one document
        return data
    except Exception:  # malformed: the slow path reports it, located
        return _SLOW
    finally:
        loader.dispose()


def _from_events(get: Callable[[], Any]) -> Any:
    """The value of the document whose events ``get`` gives, or ``_SLOW``."""
    resolvers = _Loader.yaml_implicit_resolvers  # by first character
    events = yaml.events
    scalar_event = events.ScalarEvent
    mapping_start, sequence_start = events.MappingStartEvent, events.SequenceStartEvent
    mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
    exponent, str_tag, no_key = _EXPONENT_NUMBER, _STR, _NO_KEY
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
                return _SLOW
            value = event.value
            tag = str_tag
            if event.implicit[0]:  # plain: what YAML 1.1 makes of the text
                tag = resolved.get(value) or (
                    _resolve(value, resolved) if value[:1] in resolvers else str_tag)
            if is_mapping and key is no_key:
                key = value if tag is str_tag else _plain_key(tag, value)
                if key is _SLOW:
                    return _SLOW
                continue
            if tag is not str_tag:
                value = _plain(tag, value)
                if value is _SLOW:
                    return _SLOW
            elif not event.style and exponent.match(value):
                value = float(value)
        elif kind is mapping_start or kind is sequence_start:
            if (event.tag is not None or event.anchor is not None or len(around) >= MAX_DEPTH
                    or (is_mapping and key is no_key)):  # a list or mapping as a key
                return _SLOW
            around.append((container, is_mapping, key))
            container, is_mapping, key = {} if kind is mapping_start else [], (
                kind is mapping_start), no_key
            continue
        elif kind is mapping_end or kind is sequence_end:
            value = container
            container, is_mapping, key = around.pop()
        else:  # an alias
            return _SLOW
        if container is None:
            break
        if not is_mapping:
            container.append(value)
        elif key in container:
            return _SLOW  # a duplicate key
        else:
            container[key] = value
            key = no_key
    return value


def _resolve(text: str, resolved: dict[str, str]) -> str:
    """The tag YAML gives the plain scalar ``text`` (remembered in ``resolved`` if short)."""
    tag = _STR
    for candidate, pattern in _Loader.yaml_implicit_resolvers.get(text[0] if text else "", ()):
        if pattern.match(text):
            tag = candidate
            break
    if len(text) < 64:
        resolved[text] = tag
    return tag


def _plain(tag: str, text: str) -> Any:
    """The value of a plain scalar that YAML resolves to ``tag`` (not str), or ``_SLOW``."""
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return _BOOL_VALUES[text.lower()]
    if tag == _INT and _PLAIN_INT.fullmatch(text):
        return int(text)
    if tag == _FLOAT and _PLAIN_FLOAT.fullmatch(text):
        return float(text)
    return _SLOW  # a merge key, a date, 0x…, .inf: the slow path reads those


def _plain_key(tag: str, text: str) -> Any:
    """A plain key as ``_key`` reads it, or ``_SLOW``."""
    if tag == _VALUE:
        return "="
    value = _plain(tag, text)
    return _SLOW if value is _SLOW else str(value)



# -- the fastest path: the common subset of YAML, read line by line ------------------------
# libyaml hands each event over as a Python object (with two marks): ~0.5 us an event, 13 of
# them for a step such as `- {id: s1, plugin: noop, inputs: {value: $s0.value}}`. Most specs
# are written with a few shapes only: `key: value` and `- item` lines, indented, with plain
# or simply quoted scalars and one-line flow collections. Those are read here with a few
# regular expressions, their scalars as _from_events reads them, comments left out.
# Anything else (escapes, multi-line scalars, anchors, tags, `? keys`, tabs, non-ASCII text,
# a key YAML would not take...) gives ``_SLOW``, and the events path reads the document.

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


def _subset(text: str) -> Any:
    """The data of a document in the subset (its top level a mapping), or ``_SLOW``."""
    if _SUBSET_ODD.search(text):
        return _SLOW
    if " #" in text:
        # Comments after values go: out of quotes, ' #' starts one. Inside quotes (where it
        # does not), the cut leaves a quote open, which the subset does not read.
        text = _COMMENT.sub("", text)
    reader = _Reader(_LINE.findall(text))
    if not reader.count or not reader.lines[0][1]:
        return _SLOW  # a top level that is not a mapping: the spec's checks say so
    try:
        data, end = reader.node(0, reader.indents[0], 1)
    except _Slow:
        return _SLOW
    return data if end == reader.count else _SLOW


class _Reader:
    """The lines of a document, without blank lines and comments (each one's indent and
    content), read as the blocks they make. Scalars are read once for each text: the keys,
    the values of lines and the values in flow collections each have a table (a text reads
    differently in each), which holds what _from_events would make of them."""

    def __init__(self, lines: list[tuple[str, str, str, str]]) -> None:
        self.lines = lines  # (indent, key, value, content): _LINE's groups, '' for none
        self.indents = [len(line[0]) for line in lines]
        self.count = len(lines)
        self.resolved: dict[str, str] = {}  # plain text -> its tag, as in _from_events
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
            key = written if tag is _STR else _plain_key(tag, written)
            if key is _SLOW:
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
    """The tag YAML gives the plain scalar ``text``, as in _from_events."""
    return resolved.get(text) or (
        _resolve(text, resolved) if text[:1] in _Loader.yaml_implicit_resolvers else _STR)


def _plain_value(text: str, resolved: dict[str, str]) -> Any:
    """A plain scalar's value, as _from_events reads it."""
    tag = _plain_tag(text, resolved)
    if tag is not _STR:
        value = _plain(tag, text)
        if value is _SLOW:
            raise _Slow
        return value
    # (Only a text starting like a number can be one: most are not asked the pattern.)
    if text[0] in _NUMBER_START and _EXPONENT_NUMBER.match(text):
        return float(text)
    return text


_NUMBER_START = frozenset("-0123456789")  # what _EXPONENT_NUMBER starts with

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


def _fast_json(text: str) -> Any:
    """``json.loads`` of a JSON document whose YAML reading (the slow path's) is certainly
    the same data without a problem, or ``_SLOW``."""
    written = text.strip(" \r\n")  # a tab before or after it: YAML refuses it
    if (written[:1] != "{" or written[-1:] != "}" or re.search(_YAML_ODD, text)
            or ("\\u" in text and _ESCAPED_SURROGATE.search(text))):
        return _SLOW
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, NaN, a number too long: the slow path
        return _SLOW
    ends = _KEY_END.findall(text)
    if any(len(end) > 2 for end in ends) and any(
            len(end) > 32 or "\n" in end or "\r" in end for end in ends):
        return _SLOW  # YAML wants a key and its ':' on one line, close together
    # Each key is one of `ends`, which may also count a `\":` inside a text: as many keys in
    # the data as `ends` means that json.loads dropped no duplicate.
    if _json_keys(data) != len(ends):
        return _SLOW
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
