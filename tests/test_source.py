"""The fast path of ``flowhost.source`` (data from libyaml's events, or from json.loads)
against the slow path (the node tree, with lines): the same data, the same lines, the same
problems, for every spec in examples/ and in the tests, and for YAML's odd corners."""

from __future__ import annotations

import ast
import json
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowhost import fast_read, source, yaml_slow, yaml_subset
from flowhost.problems import SpecError
from flowhost.source import parse_document
from flowhost.yaml_common import SLOW

REPO = Path(__file__).resolve().parent.parent


def typed(value: Any) -> Any:
    """``value`` with the type of each part, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def outcome(read: Callable[[], source.Document]) -> tuple[Any, ...]:
    try:
        doc = read()
    except SpecError as exc:
        return ("problems", [str(problem) for problem in exc.problems])
    except Exception as exc:
        return ("raises", type(exc).__name__)
    return ("data", typed(doc.data), doc.lines)


def fast_of(text: str, file: str) -> Any:
    return fast_read.fast_json(text) if file.endswith(".json") else fast_read.fast_yaml(text)


def same_both_ways(text: str, file: str) -> bool:
    """Assert that the fast path agrees with the slow one; whether it read ``text`` itself."""
    slow = outcome(lambda: yaml_slow.read_slowly(text, file))
    assert outcome(lambda: parse_document(text, file)) == slow
    fast = fast_of(text, file)
    if fast is SLOW:
        return False
    assert slow[0] == "data", (text[:300], slow)
    assert typed(fast) == slow[1]
    return True


def _test_strings() -> list[str]:
    """Every string in the tests that looks like (a part of) a spec, as written and dedented."""
    found: dict[str, None] = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    "steps" in node.value or "workflow_id" in node.value):
                found[node.value] = None
                found[textwrap.dedent(node.value).lstrip()] = None
    return list(found)


EXAMPLES = sorted((REPO / "examples").glob("*.y*ml"))
TEST_SPECS = _test_strings()


def test_the_corpus_is_there() -> None:
    assert EXAMPLES and len(TEST_SPECS) > 200


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_read_the_same_both_ways_and_fast(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert same_both_ways(text, path.name)
    data = parse_document(text, path.name).data
    for written in (json.dumps(data), json.dumps(data, indent=2), json.dumps(data, indent="\t")):
        assert same_both_ways(written, "wf.json")


def test_the_specs_in_the_tests_read_the_same_both_ways() -> None:
    fast = 0
    for text in TEST_SPECS:
        fast += same_both_ways(text, "wf.yaml")
        same_both_ways(text, "wf.json")
        try:
            data = yaml_slow.read_slowly(text, "wf.yaml").data
        except SpecError:
            continue
        if not isinstance(data, dict):
            continue
        try:
            written = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
        except ValueError:  # .inf or .nan: not JSON
            continue
        assert same_both_ways(written, "wf.json")
    assert fast > len(TEST_SPECS) // 2  # the fast path reads most of them


def test_a_long_chain_is_read_fast() -> None:
    lines = ["workflow_id: chain", "steps:", "  - {id: s0, plugin: noop, inputs: {value: 0}}"]
    lines += [f"  - {{id: s{i}, plugin: noop, inputs: {{value: $s{i - 1}.value}}, "
              f"cache: false, timeout: 1.5}}" for i in range(1, 300)]
    assert same_both_ways("\n".join(lines) + "\n", "chain.yaml")


ODD_YAML = [
    "", "# nothing\n", "---\n", "~\n", "a\n", "1e5\n", "[1, 2]\n", "a: 1\n---\nb: 2\n",
    "a: 1\n...\n", "--- a: 1\n", "%YAML 1.1\n---\na: 1\n", "a: 1\n]\n", "a: [1\n", "a: 'x\n",
    "a: 1\na: 2\n", "{a: 1, a: 1}\n", "a: {b: 1, b: 1}\n", "a: 1\n'a': 2\n", "1: a\n'1': b\n",
    "a: &x 1\nb: *x\n", "a: &x 1\n", "a: *x\n", "a: &x [*x]\n",
    "base: &b {x: 1}\nc: {<<: *b, y: 2}\n", "c: {<<: {x: 1}, x: 2}\n", "c: {<<: [{x: 1}]}\n",
    "<<: 1\n", "a: <<\n", "=: 1\n", "a: =\n", "? [a]\n: 1\n", "? {a: 1}\n: 1\n", "? a\n",
    "a: !!str 1\n", "a: !!int '7'\n", "a: !!int nope\n", "a: ! 1\n", "a: !foo x\n",
    "!!map {a: 1}\n", "a: !!binary aGk=\n", "a: !!set {x, y}\n", "a: !!python/name:os.system\n",
    "a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: true\ng: False\n", "yes: 1\nnull: 2\n~: 3\n",
    "a: null\nb: ~\nc:\nd: Null\ne: NULL\nf: nULL\n", "a: 0\nb: -0\nc: +5\nd: 007\ne: 0x1F\n",
    "a: 0o17\nb: 0b101\nc: 1_000\nd: 190:20:30\ne: 09\nf: -12\n", "a: 017\nb: 0\n",
    "a: " + "9" * 5000 + "\n",
    "a: 0x" + "f" * 5000 + "\n", "a: " + "9" * 41 + "\n", "a: " + "9" * 42 + "\n",
    "a: 1.5\nb: -.5\nc: 1.\nd: 1.5e+3\ne: 1.5e3\nf: 1e5\ng: -2.5E-1\nh: 1_0.5\n",
    "a: .inf\nb: -.Inf\nc: .nan\nd: 1e999\ne: 6.8523015e+5\nf: 685.230_15e+03\n",
    "a: '1e5'\nb: \"1e5\"\nc: 1e5x\nd: |\n  1e5\ne: >\n  1e5\n", "1e5: a\n1.5: b\n0x10: c\n",
    "true: a\n1.0: b\n-0: c\n+1: d\n", "a: 2024-01-01\nb: 2024-02-30\nc: 2024-01-01 10:00:00\n",
    "2024-01-01: a\n", "a: \"\\u00e9\\t\\x41\"\nb: 'it''s'\nc: \"\\ud800\"\n",
    "a: |\n  line\n  more\nb: >-\n  folded\n  text\n", "a: b\n  c\n", "a: b: c\n",
    "a:\n- 1\n- [2, {b: 3}]\n", "- a\n- b\n", "a: {b: [c, {d: e}]}\n", "a: []\nb: {}\n",
    "a: x # comment\n# b: y\n", "a:\tx\n", "\ta: x\n", "a: x\r\nb: y\r\n", "\ufeffa: 1\n",
    "a: \x85\n", "a: \x07\n", "a: \u2028x\n", "a: caf\u00e9\nb: \U0001F600\n",
    "[" * 99 + "]" * 99 + "\n", "[" * 100 + "]" * 100 + "\n", "[" * 101 + "]" * 101 + "\n",
    "{a: " * 100 + "1" + "}" * 100 + "\n", "a:\n" + "".join(f"{' ' * i} - \n" for i in range(3)),
    "a: [1, 2,]\n", "{a: 1,}\n", "[a, b]: 1\n", "a: {b}\n", "a: [b: 1]\n", "a: @x\n",
    "a: `x\n", "a: %x\n", "a: 'x' y\n", "a: \"x\n  y\"\n", "a: x\n b: y\n", "k" * 1100 + ": 1\n",
    "a: $s0.value\nb: ${env.HOME}\nc: $$\n", "workflow_id: w\nsteps:\n  - plugin: echo\n",
    "a: \udce9\n",
]

ODD_JSON = [
    "", "{}", "[]", '"x"', "1", " {}", "\t{}", "\n\n{}", "{}\n\t", "{} \t\n", '{"a": 1}#x',
    '{"a": 1, "a": 2}', '{"a": {"b": 1, "b": 1}}', '{"a": [{"b": 1}, {"b": 1}]}',
    '{"a": "x\\":", "a": 2}', '{"a": "x\\": y", "b": 2}', '{"a"\n: 1}', '{"a"\r\n: 1}',
    '{"a"' + " " * 40 + ': 1}', '{"a"  : 1}', '{"' + "k" * 80 + '": 1}', '{"' + "k" * 81 + '": 1}',
    '{"' + "k" * 1100 + '": 1}', '{"' + "\\u00e9" * 160 + '": 1}', '{"a": NaN}',
    '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e5, "b": 1E+5, "c": 1.5e3, "d": -0}',
    '{"a": -0.0, "b": 0.1e-2, "c": 1e999, "d": 12345678901234567890123456789}',
    '{"a": ' + "9" * 5000 + "}", '{"a": "\\ud83d\\ude00"}', '{"a": "\\ud800"}',
    '{"a": "\\\\ud800"}', '{"a": "\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\\\u0000"}', '{"a": "\x85"}',
    '{"a": "\x7f"}', '{"a": "\u2028"}', '{"a": "\ufeff"}', '\ufeff{"a": 1}', '{"a": "\t"}',
    '{"a": "caf\u00e9 \U0001F600"}', '{"a":1,"b":[1,2],"c":{"d":null,"e":true,"f":false}}',
    '{\n\t"a": [\n\t\t1\n\t]\n}', '{\r\n  "a": 1\r\n}', '{"a": 1,}', "{'a': 1}", "{a: 1}",
    '{"a": 1} {"b": 2}', '{"a": 1}\n---\n', '{"<<": {"b": 1}, "=": 2, "": 3}',
    '{"a": "# x", "b": "&a *a !t", "c": "- x", "d": "x: y", "e": "%x"}',
    '{"a": ' + "[" * 98 + "]" * 98 + "}", '{"a": ' + "[" * 99 + "]" * 99 + "}",
    '{"a": ' + "[" * 100 + "]" * 100 + "}", '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"a": 1, "steps": [{"plugin": "x", "inputs": {"v": "$s.x"}}]}', '{"a": "\udce9"}',
]


@pytest.mark.parametrize("text", ODD_YAML, ids=range(len(ODD_YAML)))
def test_odd_yaml_reads_the_same_both_ways(text: str) -> None:
    same_both_ways(text, "wf.yaml")
    same_both_ways(text, "wf.json")


@pytest.mark.parametrize("text", ODD_JSON, ids=range(len(ODD_JSON)))
def test_odd_json_reads_the_same_both_ways(text: str) -> None:
    same_both_ways(text, "wf.json")
    same_both_ways(text, "wf.yaml")


@pytest.mark.parametrize(("text", "file"), [
    ("a: 1\nb: [x, {c: 2.5}]\n", "wf.yaml"), ('{"a": 1, "b": ["x", {"c": 2.5}]}', "wf.json"),
    ("a: yes\n1: ~\n=: x\n", "wf.yaml"), ('{\n  "a": "x",\n  "b": [1, 2]\n}\n', "wf.JSON"),
])
def test_plain_documents_take_the_fast_path(text: str, file: str) -> None:
    assert same_both_ways(text, file.lower())
    doc = parse_document(text, file)
    assert doc._lines is None  # not read yet
    assert doc.lines == yaml_slow.read_slowly(text, file).lines


def test_lines_are_found_when_a_message_needs_one() -> None:
    doc = parse_document("workflow_id: w\nsteps:\n  - id: a\n    plugin: echo\n", "wf.yaml")
    assert doc.line_of(("steps", 0, "plugin")) == 4
    assert doc.line_of(("steps", 0, "inputs", "x")) == 3
    assert doc.line_of(()) == 1


# -- the subset read line by line (flowhost.yaml_subset) ------------------------------------------

SCALARS = [
    "x", "noop", "s1", "$s0.value", "${env.HOME}", "$$", "a b", "a  b", "hello, world", "0", "-0",
    "+5", "-12", "007", "017", "09", "0x1F", "0o17", "0b101", "1_000", "190:20:30", "12:30",
    "1.5", "-.5", "1.", ".5", "1.5e+3", "1.5e3", "1e5", "-2.5E-1", "1e5x", ".inf", "-.Inf", ".nan",
    "9" * 41, "9" * 42, "yes", "No", "on", "OFF", "y", "n", "true", "False", "TRUE", "null", "Null",
    "NULL", "nULL", "~", "2024-01-01", "2024-01-01 10:00:00", "=", "<<", "<a", "=a", "http://h:80/p",
    "a:b", "a: b", "a:", ":a", "a #b", "a#b", "#a", "&a x", "*a", "!t x", "!!str 1", "a!b", "a&b*c",
    "-", "- x", "-x", "--", "-.5", "?", "? x", "a?", "a,b", ",a", "[a]", "[]", "{}", "[a, b]",
    "[a,b]", "[a, [b, c]]", "{a: 1}", "{a: 1, b: [x, y]}", "{a: 1,}", "[a,]", "{a:1}", "{a}",
    "{a: }", "{a: 1, a: 2}", "{yes: 1}", "[a: 1]", "{a: 1}x", "[a] b", "{a: {b: {c: d}}}",
    "{a: 'x, y'}", '{a: "b"}', "{'a': 1}", "[\"x\", 'y']", "{a: -1, b: -x}", "{a: b c}",
    "{a: b  c , d: e}", "{a : b}", "[a, b", "a]", "a}", "{a: [1, {b: 2}]}", "''", '""', "'x'",
    '"x"', "'it''s'", '"a\\nb"', '"a \\" b"', "'a # b'", '"a: b"', "'x' y", '"x', "'x", "|", ">",
    "|-", "%x", "@x", "`x", "a|b", "a>b", "(a)", "^a", "a\\b", "a\tb", "caf\u00e9", "x\r",
    "x ", " x", "a" * 130, "--- a", "...", "a % b", "a;b", "a @ b", "%", "{a: %}", "[@]",
    "'x' # c", "\"x #y\" #z", "{a: 'b #c'}", "[a, b] # c", "x # c", "x #", "x#", "#", "# c",
    "${a.b}/c", "a{b}", "x [y]", "a]b", "{a: b #c}", "'a'' #b'", "\"#\"", "[a, '#'] #",
]
KEYS = ["a", "b", "c", "id", "plugin", "inputs", "value", "yes", "on", "null", "~", "1", "-1",
        "1.5", "1e5", "0x1F", "1_0", "2024-01-01", "a b", "a-b", "a.b", "_a", "=", "<<", "'a'",
        '"a"', "? a", "a:b", "k" * 127, "k" * 128, "k" * 1100, "true", "False", "0", "007", ""]


class _Gen:
    """Random documents, mostly in the subset and mostly valid, with YAML's odd corners."""

    def __init__(self, seed: int) -> None:
        import random

        self.rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def scalar(self) -> str:
        choice = self.rng.random()
        if choice < 0.15:
            return self.flow(0)
        return self.pick(SCALARS) if choice < 0.25 else self.pick(SCALARS[:40])

    def flow(self, depth: int) -> str:
        """A flow collection, mostly of the subset's scalars."""
        rng = self.rng
        parts = []
        for _ in range(rng.randint(0, 3)):
            value = self.flow(depth + 1) if rng.random() < 0.2 and depth < 3 else self.pick(
                SCALARS[:40] if rng.random() < 0.9 else SCALARS)
            parts.append(value if rng.random() < 0.5 else f"{self.key()}: {value}")
        gap = self.pick([", ", ", ", ",", " , "])
        if rng.random() < 0.5 and all(": " in part for part in parts):
            return "{" + gap.join(parts) + "}"
        return "[" + gap.join(parts) + "]"

    def key(self) -> str:
        return self.pick(KEYS) if self.rng.random() < 0.05 else self.pick(KEYS[:8])

    def block(self, indent: int, depth: int) -> list[str]:
        """The lines of a mapping or list at column ``indent``."""
        rng = self.rng
        lines: list[str] = []
        pad = " " * indent
        if rng.random() < 0.35 and depth > 0:
            for _ in range(rng.randint(1, 3)):
                lines += self.item(pad, indent, depth)
            return lines
        for _ in range(rng.randint(1, 4)):
            key = self.key()
            choice = rng.random()
            if choice < 0.55 or depth > 3:
                lines.append(f"{pad}{key}: {self.scalar()}")
            elif choice < 0.65:
                lines.append(f"{pad}{key}:")
            elif choice < 0.75:  # a list at the key's own column
                lines.append(f"{pad}{key}:")
                for _ in range(rng.randint(1, 2)):
                    lines += self.item(pad, indent, depth + 1)
            else:
                lines.append(f"{pad}{key}:")
                lines += self.block(indent + rng.choice([1, 2, 2, 4]), depth + 1)
        return lines

    def item(self, pad: str, indent: int, depth: int) -> list[str]:
        rng = self.rng
        choice = rng.random()
        gap = " " * rng.choice([1, 1, 1, 3])
        if choice < 0.4:
            return [f"{pad}-{gap}{self.scalar()}"]
        if choice < 0.5:
            return [f"{pad}-", *self.block(indent + 2, depth + 1)] if rng.random() < 0.7 else [
                f"{pad}-"]
        inner = self.block(indent + 1 + len(gap), depth + 1)
        first = inner[0][indent + 1 + len(gap):]
        return [f"{pad}-{gap}{first}", *inner[1:]]

    def document(self) -> str:
        rng = self.rng
        lines = self.block(rng.choice([0, 0, 0, 2]), 0)
        for _ in range(rng.choice([0, 0, 0, 0, 1, 2])):  # comments, blank lines, stray text
            at = rng.randint(0, len(lines))
            lines.insert(at, self.pick(["", "  ", "# note", "   # note: x", "#", " x", "- x",
                                        "  y: 1", "\t", "---", "...", "? z", "a: b\\", "k:v"]))
        if rng.random() < 0.05:
            at = rng.randrange(len(lines))
            lines[at] += self.pick([" ", "  # c", " #", "\t", ":", ",", " x: y"])
        end = self.pick(["\n"] * 6 + ["", "\n\n", "\r\n"])
        return end.join(lines) + end if end != "\r\n" else "\r\n".join(lines)


def subset_agrees(text: str) -> bool:
    """Assert that what the subset reads of ``text`` the slow path reads too, without a
    problem; whether the subset read it."""
    fast = yaml_subset.read(text)
    if fast is SLOW:
        return False
    slow = outcome(lambda: yaml_slow.read_slowly(text, "wf.yaml"))
    assert slow[0] == "data", (text, slow)
    assert typed(fast) == slow[1], text
    return True


def test_the_subset_reads_what_the_slow_path_reads() -> None:
    """Thousands of random documents: whatever the subset reads, the slow path reads the
    same (and finds no problem in); what it does not, it leaves to the other paths."""
    generator = _Gen(20260212)
    read = 0
    for _ in range(6000):
        read += subset_agrees(generator.document())
    assert read > 600  # the subset reads a good part of them


@pytest.mark.parametrize("text", [*ODD_YAML, *(f"a: {value}\n" for value in SCALARS),
                                  *(f"- {value}\n" for value in SCALARS),
                                  *(f"{key}: 1\n" for key in KEYS),
                                  *(f"a:\n  - {value}\n" for value in SCALARS)])
def test_the_subset_reads_odd_scalars_as_the_slow_path(text: str) -> None:
    subset_agrees(text)
    same_both_ways(text, "wf.yaml")


def test_the_subset_reads_the_specs_in_the_tests_as_the_slow_path() -> None:
    read = 0
    for text in [*TEST_SPECS, *(path.read_text(encoding="utf-8") for path in EXAMPLES)]:
        read += subset_agrees(text)
    assert read > len(TEST_SPECS) // 3


@pytest.mark.parametrize("text", [
    "workflow_id: w\nsteps:\n  - {id: s1, plugin: noop, inputs: {value: $s0.value}, "
    "cache: false}\n",
    "workflow_id: w\nsteps:\n  - id: s1\n    plugin: noop\n    inputs:\n      value: $s0.value\n",
    "workflow_id: w\nsteps:\n- plugin: noop\n  inputs: {a: [1, 2.5, yes, ~, 'q', \"d\"]}\n",
    "# a spec\nworkflow_id: w   \n\nsteps:\n  # the one step\n  - plugin: echo\n",
    "workflow_id: w  # the id\nsteps:\n  - plugin: echo  # says it\n    needs: [a]  #\n"
    "    inputs: {text: '# not a comment'}\n    validation:\n"
    "      - files_exist:\n          - ${a.dir}/main.py\n",
])
def test_common_specs_are_read_by_the_subset(text: str) -> None:
    """Plain specs, with comments and `${…}` in paths, and the examples: the subset reads
    them, and as the slow path does."""
    fast = yaml_subset.read(text)
    assert fast is not SLOW
    assert typed(fast) == typed(yaml_slow.read_slowly(text, "wf.yaml").data)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_are_read_by_the_subset(path: Path) -> None:
    assert subset_agrees(path.read_text(encoding="utf-8"))
