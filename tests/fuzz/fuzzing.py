"""What the fuzz tests share (no tests here): the budget, generated YAML pieces, specs and
``--set`` values, and the ``flowhost`` command run in-process with the checks that every
answer must pass.

The budget is ``FLOWHOST_FUZZ_EXAMPLES`` (default 200): each test takes a share of it, so
``FLOWHOST_FUZZ_EXAMPLES=5000`` is the deeper run on demand (``tests/fuzz/conftest.py``
lets each test's time limit grow with it). No time is asserted, but hypothesis is steered
towards inputs that keep ``flowhost`` long (``target``): the slowest shows in its statistics
(``pytest tests/fuzz --hypothesis-show-statistics``: "Highest target score").
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, currently_in_test_context, settings, target
from hypothesis import strategies as st

from flowhost.cli import main

DEFAULT_BUDGET = 200
BUDGET = int(os.environ.get("FLOWHOST_FUZZ_EXAMPLES", str(DEFAULT_BUDGET)))
MAX_LINE = 6_000  # a problem's message and fix are clipped to 2,000 characters each


def budget(share: float) -> settings:
    """Hypothesis settings for ``share`` of the budget's examples (at least one)."""
    return settings(max_examples=max(1, round(BUDGET * share)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example],
                    print_blob=True)


# Hypothesis draws the ends of a range of integers more often than the rest; the first of a
# sampled list more often than the others: True about one time in ten.
ONE_IN_TEN = st.sampled_from([False] * 9 + [True])


# --------------------------------------------------------------- the command in-process
@dataclass(frozen=True)
class Ending:
    code: int
    out: str
    err: str


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A fresh directory, the current one while the block runs (``flowhost`` keeps its
    state in ``./.flowhost`` by default)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="flowhost-fuzz-") as where:
        os.chdir(where)
        try:
            yield Path(where)
        finally:
            os.chdir(before)


def run_cli(argv: Sequence[str], env: dict[str, str] | None = None) -> Ending:
    """``flowhost ARGV`` in-process. ``FLOWHOST_DEBUG=1`` makes any exception that the
    command would report as "internal error" escape, so that hypothesis shows it; argparse's
    own exit (usage errors, ``--help``) is an ending like any other."""
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with mock.patch.dict(os.environ, {"FLOWHOST_DEBUG": "1", **(env or {})}), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    if currently_in_test_context():  # steer towards slow inputs (no time is asserted)
        target(time.perf_counter() - started, label="seconds in flowhost")
    return Ending(code, out.getvalue(), err.getvalue())


def assert_ends_well(ending: Ending, codes: Sequence[int] = (0, 2),
                     names: Sequence[str] = ()) -> None:
    """The ending is one of ``codes``, without a traceback or "internal error", its lines of
    bounded length; exit 2 is a ``flowhost: ...`` message (or argparse's usage error) that
    names one of ``names`` when they are given."""
    message = ending.err
    shown = (ending.code, message[:2000])
    assert ending.code in codes, shown
    assert "internal error" not in message and "Traceback" not in message, shown
    usage = ending.code == 2 and message.startswith("usage: ") and ": error: " in message
    if usage:
        return  # argparse's: it repeats the arguments it did not take, however long
    longest = max((len(line) for line in message.splitlines()), default=0)
    assert longest < MAX_LINE, shown
    if ending.code == 2:
        assert message.startswith("flowhost: "), shown
        if names:
            assert any(name in message for name in names), (names, *shown)


def validate(text: str, overrides: Sequence[str] = (), name: str = "wf.yaml") -> str:
    """``flowhost validate`` of ``text`` (lone surrogates written as the bytes they stand
    for); it ends well, naming the file or the ``--set`` at fault; its stderr."""
    return validate_bytes(text.encode("utf-8", errors="surrogatepass"), overrides, name)


def validate_bytes(data: bytes, overrides: Sequence[str] = (), name: str = "wf.yaml") -> str:
    with workdir() as where:
        spec = where / name
        spec.write_bytes(data)
        ending = run_cli(["validate", str(spec), *(f"--set={o}" for o in overrides)])
    assert_ends_well(ending, names=(name, "--set"))
    return ending.err


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
REFERENCES = TRICKY[60:90]  # "$" ... "[": the references, broken and whole
YAML_CHARS = st.sampled_from([*"abcxyz019 _-.:,{}[]&*!|>'\"%@`#$=<~?\n\t\\", "é", "\u2028"])
KEYS = st.sampled_from(["text", "data", "tags", "count", "x", "a", "<<", "=", "", "text"])


def flow_key(key: str) -> str:
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
            lambda pairs: "{" + ", ".join(f"{flow_key(k)}: {v}" for k, v in pairs) + "}"),
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
CHECK_KINDS = ["output", "files_exist", "python_syntax", "importable", "http_ok", "command",
               "file_contains", "nope"]


def checks(kinds: Sequence[str] = CHECK_KINDS) -> st.SearchStrategy[str]:
    """A validation check of one of ``kinds`` with generated arguments."""
    return st.tuples(st.sampled_from(list(kinds)), st.one_of(values, st.sampled_from([
        "{field: text, matches: 'a{99999999999}'}",
        "{field: text, matches: '" + "(" * 500 + "'}",
        "{field: text, equals: hello}", "{field: length, type: integer}",
        "{field: $a.text, in: [1]}", "{field: nope.x, equals: 1}"]))).map(
        lambda kv: f"{{{kv[0]}: {kv[1]}}}")


CHECKS = checks()
# What may run: a `command` check of `yes` would write to its output file until its timeout
# (300 s by default; the file has no bound), `http_ok` may reach out, `importable` imports.
RUNNABLE_CHECKS = checks(["output", "files_exist", "python_syntax", "file_contains", "nope"])


ALL_PLUGINS = ("numbers", "noop", "ecko", "grpc://127.0.0.1:1/x", "broken-import", "sleeper",
               "$a.text", "")


@st.composite
def specs(draw: st.DrawFn, plugins: Sequence[str] = ALL_PLUGINS,
          check: st.SearchStrategy[str] = CHECKS) -> str:
    """A two-step spec (with references between the steps) and wrong values in its slots;
    its first step's plugin ``echo``, or now and then one of ``plugins``; its checks drawn
    from ``check``."""
    plugin = draw(mostly("echo", st.sampled_from(list(plugins))))
    inputs = draw(mostly("{text: hi}", st.one_of(values, deep, st.sampled_from([
        "{text: &t hello, data: {copy: *t, more: *t}}",
        "{text: hi, data: &d {a: 1}, tags: [*d]}",
        "{<<: {text: merged}, text: own}",
        "{<<: [{text: a}, {count: 1}], tags: []}",
        "{text: hi, text: again}",
        "{count: 3, ratio: .nan, flag: maybe}"]))))
    field = draw(st.sampled_from(STEP_FIELDS))
    extra = f"{field}: {draw(RETRY) if field == 'retry' else draw(values)}"
    reference = draw(mostly("$a.text", st.sampled_from(REFERENCES) | values))
    step_check = draw(mostly("{output: {field: length, type: integer}}", check))
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
             f"    validation: [{step_check}]"]
    if duplicate_step:
        lines += ["  - id: a", "    plugin: echo"]
    final = draw(mostly("{output: {field: b.text, equals: x}}", check))
    lines += [f"final_validation: [{final}]"]
    return "\n".join(lines) + "\n"


# What may run: no `numbers` step (it makes a list of `count` items: 10**12 would take the
# machine's memory), no sleeper; checks that start no process and open no connection.
runnable_specs = specs(plugins=("noop", "ecko", "fail", "$a.text", ""), check=RUNNABLE_CHECKS)


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
