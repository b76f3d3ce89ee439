"""Generated specs and ``--set`` values through ``flowhost validate``, in-process.

Whatever the input — a valid structure with wrong values, broken references (``$``, ``${``,
``$a.``), deep nesting, huge strings and numbers, odd YAML tags, anchors and aliases,
duplicate keys, random unicode, bytes that are not UTF-8, random text — ``validate`` either
succeeds (exit 0) or refuses it with exit 2 and a ``flowhost: ...`` message of bounded size
that names the file (or the ``--set`` at fault): never another exception, never "internal
error" (``fuzzing.validate``).

The budget is ``FLOWHOST_FUZZ_EXAMPLES`` examples in all (default 200), shared among the
tests below; the last test, which only reads documents (in-process, fast), compares the fast
path of ``flowhost.source`` with the slow one on as many again.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fuzzing import (
    KEYS,
    ONE_IN_TEN,
    TWO_STEPS,
    YAML_CHARS,
    budget,
    deep,
    flow_key,
    json_values,
    overrides,
    specs,
    validate,
    validate_bytes,
    values,
)
from hypothesis import event, given
from hypothesis import strategies as st

from flowhost import fast_read, source, yaml_slow
from flowhost.problems import SpecError
from flowhost.yaml_common import SLOW

pytestmark = pytest.mark.fuzz


@budget(0.4)
@given(specs())
def test_generated_specs_validate_or_exit_2(text: str) -> None:
    validate(text)


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


# ------------------------------------------------------------- bytes that are not UTF-8
NOT_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80", b"\x00",
            b"\x1b[31m", b"\r", b"\x85", b"\xef\xbb\xbf", b"\xff\xfe"]


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """A spec's bytes with a few byte strings put in at random places, or the whole spec in
    another encoding (with or without its byte-order mark)."""
    data = draw(st.one_of(st.just(TWO_STEPS), specs())).encode("utf-8", "surrogatepass")
    if draw(ONE_IN_TEN):
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1",
                                         "utf-8-sig"]))
        return data.decode("utf-8", "replace").encode(encoding, "replace")
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(NOT_UTF8) | st.binary(min_size=1, max_size=8))
        replace = draw(st.integers(0, 2))
        data = data[:where] + piece + data[where + replace:]
    return data


@budget(0.2)
@given(spliced(), st.sampled_from(["wf.yaml", "wf.json"]))
def test_bytes_that_are_not_utf8_validate_or_exit_2(data: bytes, name: str) -> None:
    message = validate_bytes(data, name=name)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        event("not UTF-8")
        assert message, "a file that is not UTF-8 was taken"


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
        doc = source.parse_document(text, name) if fast else yaml_slow.read_slowly(text, name)
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
        lambda pairs: "".join(f"{flow_key(k) or '_'}: {v}\n" for k, v in pairs)),
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
    fast = fast_read.fast_json(text) if name.endswith(".json") else fast_read.fast_yaml(text)
    event(f"{name}: {'fast' if fast is not SLOW else 'slow'} path")
    if fast is not SLOW:
        assert slow[0] == "data" and _typed(fast) == slow[1]
