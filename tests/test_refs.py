from __future__ import annotations

import pytest

from flowhost.refs import (
    CDict,
    CList,
    Const,
    Ref,
    RefSyntaxError,
    ResolveError,
    Scope,
    Template,
    compile_value,
    iter_refs,
    resolve,
)


def test_literals_stay_literal() -> None:
    assert compile_value("plain text") == Const("plain text")
    assert compile_value({"a": [1, "x"]}) == Const({"a": [1, "x"]})
    assert compile_value(3) == Const(3)


def test_whole_reference_keeps_type() -> None:
    compiled = compile_value("$scaffolder.files_created.0")
    assert compiled == Ref("scaffolder", ("files_created", "0"), "$scaffolder.files_created.0")
    scope = Scope({"scaffolder": {"files_created": ["main.py", "x.py"]}}, {})
    assert resolve(compiled, scope) == "main.py"
    whole = compile_value("$scaffolder")
    assert resolve(whole, scope) == {"files_created": ["main.py", "x.py"]}


def test_braced_whole_value_keeps_type() -> None:
    scope = Scope({"a": {"n": 3}}, {})
    assert resolve(compile_value("${a.n}"), scope) == 3


def test_interpolation_and_escape() -> None:
    compiled = compile_value("${a.path}/main.py costs $$5 and $notref here")
    assert isinstance(compiled, Template)
    scope = Scope({"a": {"path": "/srv/app"}}, {})
    assert resolve(compiled, scope) == "/srv/app/main.py costs $5 and $notref here"


def test_interpolating_non_strings_uses_json() -> None:
    scope = Scope({"a": {"items": [1, 2]}}, {})
    assert resolve(compile_value("items=${a.items}"), scope) == "items=[1,2]"


def test_env_and_secret() -> None:
    scope = Scope({}, {"HOME": "/home/u", "TOKEN": "s3cr3t"})
    assert resolve(compile_value("${env.HOME}/apps"), scope) == "/home/u/apps"
    assert resolve(compile_value("${secret.TOKEN}"), scope) == "s3cr3t"
    with pytest.raises(ResolveError, match="NOPE is not set"):
        resolve(compile_value("${env.NOPE}"), scope)


def test_nested_structures_compile_to_containers() -> None:
    compiled = compile_value({"a": ["$x.y", 2], "b": "lit"})
    assert isinstance(compiled, CDict)
    assert isinstance(dict(compiled.items)["a"], CList)
    refs = [(ref.text, where) for ref, where, _ in iter_refs(compiled)]
    assert refs == [("$x.y", ("a", 0))]
    assert resolve(compiled, Scope({"x": {"y": True}}, {})) == {"a": [True, 2], "b": "lit"}


@pytest.mark.parametrize("text", ["${}", "${a..b}", "${a b}", "${env.A.B}", "${secret}",
                                  "${a.text", "x ${a.b} ${c"])
def test_bad_references_are_syntax_errors(text: str) -> None:
    with pytest.raises(RefSyntaxError):
        compile_value(text)


def test_a_literal_dollar_brace_is_written_doubled() -> None:
    assert compile_value("cost: $${price") == Const("cost: ${price")


def test_a_doubled_dollar_is_one_dollar_inside_literal_dicts_and_lists() -> None:
    assert compile_value({"text": "cost $$5", "argv": ["x$$y", "$$a.count"]}) == Const(
        {"text": "cost $5", "argv": ["x$y", "$a.count"]})


def test_missing_values_name_the_path() -> None:
    scope = Scope({"a": {"b": {"c": 1}}}, {})
    with pytest.raises(ResolveError, match=r"a\.b has no 'd'"):
        resolve(compile_value("$a.b.d"), scope)
    with pytest.raises(ResolveError, match="exists only inside a fallback"):
        resolve(compile_value("$inputs.x"), scope)
