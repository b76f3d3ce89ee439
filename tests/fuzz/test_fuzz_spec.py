"""Generated specs and ``--set`` values through ``flowhost validate``, in-process.

Whatever the input — a valid structure with wrong values, broken references (``$``, ``${``,
``$a.``), deep nesting, huge strings and numbers, odd YAML tags, anchors and aliases,
duplicate keys, random unicode, random text — ``validate`` either succeeds (exit 0) or
refuses it with exit 2 and a ``flowhost: ...`` message of bounded size: never another
exception, never "internal error". ``FLOWHOST_DEBUG=1`` makes any other exception escape
``main``, so hypothesis shows it (and the seed that found it).

The budget is ``FLOWHOST_FUZZ_EXAMPLES`` examples in all (default 200), shared among the
tests below; the last test, which only reads documents (in-process, fast), compares the fast
path of ``flowhost.source`` with the slow one on as many again.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowhost import source
from flowhost.cli import main
from flowhost.problems import SpecError

pytestmark = pytest.mark.fuzz

BUDGET = int(os.environ.get("FLOWHOST_FUZZ_EXAMPLES", "200"))
MAX_LINE = 6_000  # a problem's message and fix are clipped to 2,000 characters each


def budget(share: float) -> settings:
    return settings(max_examples=max(1, round(BUDGET * share)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example],
                    print_blob=True)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="flowhost-fuzz-") as where:
        yield Path(where)


def validate(text: str, overrides: Sequence[str] = (), name: str = "wf.yaml") -> str:
    """Run ``flowhost validate`` on ``text``; assert it ends well; return its stderr."""
    with _workdir() as where:
        spec = where / name
        spec.write_text(text, encoding="utf-8", errors="surrogatepass")
        argv = ["validate", str(spec), *(f"--set={override}" for override in overrides)]
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, {"FLOWHOST_DEBUG": "1"}), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    message = err.getvalue()
    assert code in (0, 2), (code, message[:2000])
    assert "internal error" not in message and "Traceback" not in message, message[:2000]
    if code == 2:
        assert message.startswith("flowhost: "), message[:2000]
    longest = max((len(line) for line in message.splitlines()), default=0)
    assert longest < MAX_LINE, message[:2000]
    return message


# ---------------------------------------------------------------------- YAML pieces
TRICKY = [
    ".inf", "-.inf", ".nan", ".NaN", "1e999", "-0", "0", "1_000", "0x1F", "0o17", "0b102",
    "017", "09", "1:20:30", "190:20:30", "2024-01-01", "2024-02-30", "2024-13-01",
    "2024-01-01 25:00:00", "2024-01-01T10:00:00+99:00", "~", "null", "Null", "yes", "no",
    "on", "off", "y", "=", "<<", "!!int nope", "!!int 09", "!!int ''", "!!bool maybe",
    "!!float nope", "!!timestamp nope", "!!timestamp 2024-02-30", "!!binary nope",
    "!!binary aGk=", "!!str 1", "!!null x", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]",
    "!!python/object:os.system x", "!!merge x", "!!value x", "!foo bar", "!<tag:x> y",
    "'quoted'", '"\\u00e9"', '"\\ud800"', '"\\x00"', '"\\U0010FFFF"', "*nope", "&a x",
    "$", "${", "$a.", "${a.text", "$a.text", "${a.text}", "$$", "$$$", "${env.HOME}",
    "${env.FLOWHOST_NOPE}", "${secret.NOPE}", "$inputs.text", "${b.nope}", "$b.length",
    "$.x", "${}", "${a.}", "${a..b}", "$a.text.0.x", "x${a.text}y${b", "[", "]", "{", "}",
    "- x", "? x", ": x", "|", ">", "---", "...", "#", "@x", "`x", "'", '"', "%", "&", "*",
    "a{99999999999}", "(" * 300, "[]", "{}", "[1, 2]", "{a: 1}", "{a: 1, a: 2}",
]
YAML_CHARS = st.sampled_from([*"abcxyz019 _-.:,{}[]&*!|>'\"%@`#$=<~?\n\t\\", "é", "\u2028"])
KEYS = st.sampled_from(["text", "data", "tags", "count", "x", "a", "<<", "=", "", "text"])


def _flow_key(key: str) -> str:
    return json.dumps(key) if not key or key in ("<<", "=") else key




def mostly(valid: str, wrong: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``valid`` about two times in three: so that the checks after loading get to run."""
    return st.one_of(st.just(valid), st.just(valid), wrong)


scalars = st.one_of(
    st.sampled_from(["hello", "1", "true", "$a.text", "${a.text} and more", "'$$5'"]),
    st.sampled_from(TRICKY),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20).map(json.dumps),  # any character, escaped (lone surrogates too)
    st.text(YAML_CHARS, max_size=12),  # unquoted: whatever YAML makes of it
    st.integers(4200, 4400).map(lambda n: "9" * n),  # around Python's int digits limit
    st.integers(50, 300).map(lambda n: "0x" + "f" * (n * 12)),
    st.integers(1_000, 200_000).map(lambda n: "a" * n),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(  # duplicate keys included
            lambda pairs: "{" + ", ".join(f"{_flow_key(k)}: {v}" for k, v in pairs) + "}"),
    ),
    max_leaves=8,
)
deep = st.tuples(st.integers(1, 99) | st.integers(100, 400), st.sampled_from(["[", "{a: "])).map(
    lambda d: d[1] * d[0] + "1" + ("]" if d[1] == "[" else "}") * d[0])

STEP_FIELDS = ["timeout", "retry", "cache", "cache_ttl", "fallback", "manual", "on_failure",
               "validation", "needs", "number", "purpose", "id", "plugin", "inputs", "retyr"]
RETRY = st.fixed_dictionaries({}, optional={
    name: values for name in ("max_attempts", "initial_delay", "multiplier", "max_delay",
                              "jitter")}).map(
    lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}")
CHECKS = st.tuples(st.sampled_from(["output", "files_exist", "python_syntax", "importable",
                                    "http_ok", "command", "file_contains", "nope"]),
                   st.one_of(values, st.sampled_from([
                       "{field: text, matches: 'a{99999999999}'}",
                       "{field: text, matches: '" + "(" * 500 + "'}",
                       "{field: text, equals: hello}", "{field: length, type: integer}",
                       "{field: $a.text, in: [1]}", "{field: nope.x, equals: 1}"]))).map(
    lambda kv: f"{{{kv[0]}: {kv[1]}}}")


@st.composite
def specs(draw: st.DrawFn) -> str:
    """A two-step spec (with references between the steps) and wrong values in its slots."""
    plugin = draw(mostly("echo", st.sampled_from([
        "numbers", "noop", "ecko", "grpc://127.0.0.1:1/x", "broken-import", "sleeper",
        "$a.text", ""])))
    inputs = draw(mostly("{text: hi}", st.one_of(values, deep, st.sampled_from([
        "{text: &t hello, data: {copy: *t, more: *t}}",
        "{text: hi, data: &d {a: 1}, tags: [*d]}",
        "{<<: {text: merged}, text: own}",
        "{<<: [{text: a}, {count: 1}], tags: []}",
        "{text: hi, text: again}",
        "{count: 3, ratio: .nan, flag: maybe}"]))))
    field = draw(st.sampled_from(STEP_FIELDS))
    extra = f"{field}: {draw(RETRY) if field == 'retry' else draw(values)}"
    reference = draw(mostly("$a.text", st.sampled_from(TRICKY[60:90]) | values))
    check = draw(mostly("{output: {field: length, type: integer}}", CHECKS))
    top = draw(st.sampled_from([
        "", "", "", "defaults: {timeout: .inf}", "breaker: {reset_after: .nan, failures: 0}",
        "defaults: {retry: {initial_delay: .inf, max_delay: .inf}}",
        "x-anchor: &big [&x [*x]]", "pattern: ~", "description: " + draw(values),
        "workflow_id: again"]))
    duplicate_step = draw(st.sampled_from([False, False, True]))
    workflow_id = draw(mostly("w", st.sampled_from(["", "~", "[1]", "!!int nope"])))
    lines = [f"workflow_id: {workflow_id}",
             top, "steps:",
             "  - id: a", f"    plugin: {plugin or '~'}", f"    inputs: {inputs}",
             f"    {draw(mostly('purpose: say it', st.just(extra)))}",
             "  - id: b", "    plugin: echo", f"    inputs: {{text: {reference}}}",
             f"    needs: {draw(mostly('[a]', st.sampled_from(['[b]', '[zz]', 'a', '[~]'])))}",
             f"    validation: [{check}]"]
    if duplicate_step:
        lines += ["  - id: a", "    plugin: echo"]
    lines += [f"final_validation: [{draw(mostly('{output: {field: b.text, equals: x}}', CHECKS))}]"]
    return "\n".join(lines) + "\n"


@budget(0.4)
@given(specs())
def test_generated_specs_validate_or_exit_2(text: str) -> None:
    validate(text)


# ----------------------------------------------------------------------- --set values
TWO_STEPS = ("workflow_id: w\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"
             "  - {id: b, plugin: echo, inputs: {text: $a.text}}\n  - {id: n, plugin: numbers,"
             " inputs: {count: 1}}\n")
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6).map(json.dumps)
set_values = st.one_of(
    json_values,
    st.sampled_from(TRICKY),
    st.text(max_size=30),
    st.text(st.one_of(st.characters(), surrogates), max_size=10),
    deep.map(lambda text: text.replace("{a: ", '{"a": ')),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
    st.integers(4200, 4400).map(lambda n: "-" + "9" * n),
    st.integers(1_000, 200_000).map(lambda n: "z" * n),
    st.sampled_from(["$b.text", "${b.text}", "$n.count", "$a.nope", "${", "$", "$a."]),
)
targets = st.one_of(
    st.sampled_from(["a.text", "b.text", "n.count", "a.data.x", "a.data.x.y", "a.", ".x", "a",
                     "", "zz.text", "a.data..x", "a.text.x", "n.count.x", "b.tags.0",
                     "a" + ".x" * 120]),
    st.text(max_size=12),
    st.text(st.one_of(st.characters(), surrogates), max_size=6),
)
overrides = st.lists(st.tuples(targets, st.sampled_from(["=", "", "=="]), set_values).map(
    lambda t: f"{t[0]}{t[1]}{t[2]}"), min_size=1, max_size=3)


@budget(0.3)
@given(overrides)
def test_generated_set_values_validate_or_exit_2(given_overrides: list[str]) -> None:
    validate(TWO_STEPS, given_overrides)


# ----------------------------------------------------------------- random documents
@budget(0.2)
@given(st.one_of(
    st.text(YAML_CHARS, max_size=200),
    st.text(max_size=100),
    st.tuples(st.text(YAML_CHARS, max_size=60), st.sampled_from(["", TWO_STEPS])).map(
        lambda parts: parts[1] + parts[0]),
), st.sampled_from(["wf.yaml", "wf.json"]))
def test_random_text_validates_or_exits_2(text: str, name: str) -> None:
    validate(text, name=name)


@budget(0.1)
@given(json_values, st.sampled_from(["workflow_id", "steps", "inputs", "retry"]))
def test_json_specs_with_values_in_odd_places_validate_or_exit_2(value: str, where: str
                                                                  ) -> None:
    step: dict[str, Any] = {"id": "a", "plugin": "echo", "inputs": {"text": "hi"}}
    spec: dict[str, Any] = {"workflow_id": "w", "steps": [step]}
    if where in ("workflow_id", "steps"):
        spec[where] = json.loads(value)
    else:
        step[where] = json.loads(value)
    validate(json.dumps(spec), name="wf.json")


# ------------------------------------------------------- the fast path of flowhost.source
def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def _read(text: str, name: str, fast: bool) -> tuple[Any, ...]:
    try:
        doc = source.parse_document(text, name) if fast else source._parse(text, name)
    except SpecError as exc:
        return ("problems", [str(problem) for problem in exc.problems])
    except Exception as exc:
        return ("raises", type(exc).__name__)
    return ("data", _typed(doc.data), doc.lines)


def _json_spec(value: Any, indent: int | str | None, ascii_only: bool) -> str:
    spec = {"workflow_id": "w", "steps": [{"id": "a", "plugin": "echo", "inputs": value}]}
    return json.dumps(spec, indent=indent, ensure_ascii=ascii_only)


def _json_object(pairs: list[tuple[str, str]]) -> str:  # duplicate keys included
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10) | st.sampled_from(["$a.text", "${a.text}!", "1e5", "yes", "~"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5) | st.sampled_from(["<<", "=", "a" * 81, ""]), inner, max_size=3),
    max_leaves=8)
json_texts = st.one_of(
    st.builds(_json_spec, plain_json, st.sampled_from([None, 0, 2, "\t", " \r\n"]),
              st.booleans()),
    st.recursive(json_values, lambda inner: st.lists(st.tuples(
        st.sampled_from(["a", "b", "<<", "a\\\":"]), inner), max_size=3).map(_json_object),
        max_leaves=6).map(lambda inner: f'{{"workflow_id": "w", "x": {inner}}}'),
)


documents = st.one_of(
    specs(),
    st.text(YAML_CHARS, max_size=200),
    st.text(max_size=100),
    values.map(lambda value: f"workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: {value}\n"),
    st.lists(st.tuples(KEYS, values), max_size=6).map(
        lambda pairs: "".join(f"{_flow_key(k) or '_'}: {v}\n" for k, v in pairs)),
    json_values,
    json_texts,
    json_texts,
    deep,
)


@budget(1.0)
@given(documents, st.sampled_from(["wf.yaml", "wf.json"]))
def test_the_fast_path_reads_what_the_slow_path_reads(text: str, name: str) -> None:
    slow = _read(text, name, fast=False)
    assert _read(text, name, fast=True) == slow
    fast = source._fast_json(text) if name.endswith(".json") else source._fast_yaml(text)
    event(f"{name}: {'fast' if fast is not source._SLOW else 'slow'} path")
    if fast is not source._SLOW:
        assert slow[0] == "data" and _typed(fast) == slow[1]
