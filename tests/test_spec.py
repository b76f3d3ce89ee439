from __future__ import annotations

from pathlib import Path

import pytest

from flowhost.problems import SpecError
from flowhost.source import parse_document
from flowhost.spec_loading import parse_spec


def problems_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "wf.yaml")
    return [str(p) for p in info.value.problems]


def test_minimal_spec_defaults() -> None:
    spec = parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: {text: hi}\n")
    step = spec.workflow.steps[0]
    assert step.id == "echo"
    assert step.on_failure == "abort"
    assert step.manual is not None
    assert spec.workflow.retry_for(step).max_attempts == 1


def test_remote_plugin_url_gives_default_id() -> None:
    spec = parse_spec("workflow_id: w\nsteps:\n  - plugin: grpc://127.0.0.1:5/redis-cache\n")
    assert spec.workflow.steps[0].id == "redis-cache"


def test_every_problem_is_reported_with_line_step_and_field() -> None:
    found = problems_of(
        """\
workflow_id: w
steps:
  - plugin: echo
    retyr: {max_attempts: 3}
  - id: b
    plugin: echo
    retry: {max_attempts: 0, multiplier: 0.5, initial_delay: -1}
  - id: b
    plugin: echo
    on_failure: explode
"""
    )
    text = "\n".join(found)
    assert "wf.yaml:4: step 'echo', field 'retyr': unknown field — did you mean 'retry'?" in text
    assert "wf.yaml:7: step 'b', field 'retry.max_attempts'" in text
    assert "field 'retry.multiplier'" in text
    assert "field 'retry.initial_delay'" in text
    assert "wf.yaml:8: step 'b', field 'id': duplicate step id" in text
    assert "field 'on_failure'" in text


def test_top_level_problems() -> None:
    text = "\n".join(problems_of("workflow_id: w\nsteps: []\nfinal_validation: 3\n"))
    assert "field 'steps'" in text
    assert "field 'final_validation'" in text


def test_malformed_yaml_names_the_line() -> None:
    found = problems_of("workflow_id: w\nsteps:\n  - plugin: [unclosed\n")
    assert found[0].startswith("wf.yaml:3:13: the '[' opened here is not closed")
    found = problems_of("workflow_id: w\nsteps: [{plugin: echo} x]\n")
    assert found[0].startswith("wf.yaml:2:") and "malformed YAML" in found[0]


def test_duplicate_yaml_keys_are_errors() -> None:
    found = problems_of("workflow_id: w\nworkflow_id: v\nsteps:\n  - plugin: echo\n")
    assert "wf.yaml:2" in found[0] and "duplicate key 'workflow_id'" in found[0]


def test_reserved_and_malformed_ids() -> None:
    text = "\n".join(problems_of(
        "workflow_id: w\nsteps:\n  - {id: env, plugin: echo}\n  - {id: 'a b', plugin: echo}\n"))
    assert "reserved" in text
    assert "not a valid step id" in text


def test_checks_must_have_one_kind() -> None:
    text = "\n".join(problems_of(
        "workflow_id: w\nsteps:\n  - plugin: echo\n    validation: [{a: 1, b: 2}]\n"))
    assert "exactly one key" in text


def test_overrides_set_inputs() -> None:
    spec = parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: {text: hi}\n",
                      overrides=["echo.text=bye", "echo.data.n=3"])
    assert spec.workflow.steps[0].inputs == {"text": "bye", "data": {"n": 3}}
    with pytest.raises(SpecError, match=r"no step 'ecko'.*did you mean 'echo'"):
        parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n", overrides=["ecko.text=x"])
    with pytest.raises(SpecError, match="not of the form"):
        parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n", overrides=["echo"])


@pytest.mark.parametrize(("raw", "value"), [
    ("yes", "yes"), ("no", "no"), ("~", "~"), ("#x", "#x"), ("0x10", "0x10"),
    ("2024-01-01", "2024-01-01"), ("NaN", "NaN"), ("a=b", "a=b"), ("", ""),
    ("3", 3), ("1e3", 1000.0), ("true", True), ("null", None), ('"007"', "007"),
    ("[1, 2]", [1, 2]), ('{"a": 1}', {"a": 1}),
])
def test_override_values_are_json_or_else_the_text_itself(raw: str, value: object) -> None:
    spec = parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n", overrides=[f"echo.x={raw}"])
    assert spec.workflow.steps[0].inputs["x"] == value


def test_json_documents_have_lines_too() -> None:
    doc = parse_document('{\n  "workflow_id": "w",\n  "steps": [\n    {"plugin": "x"}\n  ]\n}')
    assert doc.data["steps"][0]["plugin"] == "x"
    assert doc.line_of(("steps", 0, "plugin")) == 4


def test_retry_policy_backoff() -> None:
    from flowhost.spec import RetryPolicy

    policy = RetryPolicy(max_attempts=5, initial_delay=2, multiplier=2, max_delay=5)
    assert [policy.delay_before(n) for n in (2, 3, 4, 5)] == [2, 4, 5, 5]
    with pytest.raises(ValueError, match="below initial_delay"):
        RetryPolicy(initial_delay=10, max_delay=1)


# -- YAML aliases ----------------------------------------------------------------------------

def test_alias_bomb_is_refused_before_it_expands() -> None:
    lines = ["workflow_id: w", 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines += ["steps:", "  - plugin: echo", "    inputs: {text: *a8}"]
    found = problems_of("\n".join(lines) + "\n")
    assert len(found) == 1
    assert "the spec expands to more than 1,000,000 values through YAML aliases" in found[0]
    assert found[0].startswith("wf.yaml:")


def test_alias_inside_its_own_anchor_is_an_error() -> None:
    found = problems_of("workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: {t: &a [*a]}\n")
    assert found[0].startswith("wf.yaml:4:") and "inside its own anchor" in found[0]
    found = problems_of("workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: &m {<<: *m}\n")
    assert "inside its own anchor" in found[0]


def test_shared_settings_through_aliases_still_work() -> None:
    spec = parse_spec("""\
workflow_id: w
steps:
  - plugin: echo
    retry: &std {max_attempts: 4, initial_delay: 0.5}
    inputs: &common {text: hi, tags: [a, b]}
  - id: again
    plugin: echo
    retry: *std
    inputs: {<<: *common, text: bye}
""", "wf.yaml")
    first, second = spec.workflow.steps
    assert first.retry == second.retry and second.retry is not None
    assert second.retry.max_attempts == 4
    assert second.inputs == {"text": "bye", "tags": ["a", "b"]}
    assert spec.document.line_of(("steps", 1, "retry")) == 8


def test_too_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "[" * 150 + "]" * 150
    found = problems_of(f"workflow_id: w\nsteps:\n  - plugin: echo\n    inputs: {{t: {deep}}}\n")
    assert "nests more than 100 levels deep" in found[0]
    with pytest.raises(SpecError, match="nests more than 100 levels deep"):
        parse_spec('{"workflow_id": "w", "steps": ' + "[" * 5000 + "]" * 5000 + "}", "wf.json")


# -- JSON ------------------------------------------------------------------------------------

def json_problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "wf.json")
    return [str(p) for p in info.value.problems]


def test_invalid_json_names_line_and_column() -> None:
    found = json_problems('{\n  "workflow_id": "w",\n  "steps": [{"plugin": "echo"},]\n}\n')
    assert found == ["wf.json:3:32: invalid JSON: Expecting value — fix the JSON, or rename "
                     "the file to .yaml to write YAML"]
    found = json_problems('{"workflow_id": "w",\n "steps": [{"plugin": "echo"}],}')
    assert found[0].startswith("wf.json:2:32: invalid JSON: Expecting property name")
    assert json_problems("workflow_id: w\nsteps: [{plugin: echo}]\n")[0].startswith(
        "wf.json:1:1: invalid JSON")
    found = json_problems('{"workflow_id": "w",\n "steps": [{"plugin": "echo", "timeout": NaN}]}')
    assert found[0].startswith("wf.json:2:42: invalid JSON: NaN is not a JSON value")
    # The same text is fine in a YAML file.
    parse_spec('{"workflow_id": "w", "steps": [{"plugin": "echo"},]}', "wf.yaml")


def test_valid_json_keeps_its_lines_in_later_errors() -> None:
    text = ('{\n  "workflow_id": "w",\n  "steps": [\n    {"plugin": "echo",\n     "retyr": 2}\n'
            '  ]\n}')
    found = json_problems(text)
    assert found == ["wf.json:5: step 'echo', field 'retyr': unknown field — did you mean "
                     "'retry'?"]
    spec = parse_spec(text.replace("retyr", "timeout"), "flow.JSON")
    assert spec.workflow.steps[0].timeout == 2


# -- all problems at once --------------------------------------------------------------------

def test_unknown_fields_do_not_hide_the_static_problems(tmp_path: Path) -> None:
    from flowhost.catalog import Catalog
    from flowhost.static import check_file

    path = tmp_path / "wf.yaml"
    path.write_text("""\
workflow_id: w
colour: blue
steps:
  - plugin: echo
    comment: first
    inputs: {text: 3}
  - plugin: numbers
    inputz: {count: 1}
  - id: last
    plugin: numbers
    inputs: {count: "${nope.count}"}
""", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        check_file(str(path), [], Catalog(), {})
    found = [str(p).removeprefix(f"{path}:") for p in info.value.problems]
    assert found[0].startswith("2: field 'colour': unknown field")
    assert found[1].startswith("5: step 'echo', field 'comment': unknown field")
    assert found[2] == "6: step 'echo', field 'inputs.text': value 3 is rejected: 3 is not of " \
                       "type 'string'"
    # a misspelled `inputs` keeps the step out of the static checks: no "missing input" noise
    assert found[3] == "8: step 'numbers', field 'inputz': unknown field — did you mean 'inputs'?"
    # the line is the step's own, although the step before it is left out
    assert found[4].startswith("11: step 'last', field 'inputs.count': ${nope.count}: unknown "
                               "step 'nope'")
    assert len(found) == 5


def test_a_spec_with_only_an_unknown_top_level_field_has_a_partial() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("workflow_id: w\nowner: me\nsteps:\n  - plugin: echo\n", "wf.yaml")
    assert str(info.value.problems[0]).startswith("wf.yaml:2: field 'owner'")
    assert info.value.partial is not None
    assert [s.id for s in info.value.partial.workflow.steps] == ["echo"]


def test_numbers_with_an_exponent_are_numbers_as_in_json() -> None:
    from flowhost.source import parse_document

    data = parse_document('{"a": 1e5, "b": "1e5", "c": [-2.5E-1]}', "wf.json").data
    assert data == {"a": 100000.0, "b": "1e5", "c": [-0.25]}
    assert parse_document("a: 1.5e3\nb: 1e5x\n", "wf.yaml").data == {"a": 1500.0, "b": "1e5x"}


def test_a_step_with_a_bad_setting_still_has_its_references_checked() -> None:
    from flowhost.catalog import Catalog
    from flowhost.static import check

    text = """workflow_id: w
steps:
  - {id: b, plugin: numbers, inputs: {count: 2}, timeout: -1}
  - {id: c, plugin: echo, inputs: {text: $b.labell}, on_failure: maybe}
  - id: d
    plugin: echo
    inputs: {text: hi}
    cache: {ttl: 0}
"""
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "wf.yaml")
    assert caught.value.partial is not None
    with pytest.raises(SpecError) as again:
        check(caught.value.partial, Catalog(), {})
    found = [str(p) for p in [*caught.value.problems, *again.value.problems]]
    assert any("field 'timeout'" in p for p in found)
    assert any("field 'on_failure'" in p for p in found)
    assert any("wf.yaml:8: step 'd', field 'cache.ttl'" in p for p in found), found
    assert any("$b.labell" in p and "did you mean 'label'" in p for p in found)


def test_manual_timeout_and_default_are_checked_where_they_are_written() -> None:
    spec = parse_spec("workflow_id: w\nsteps:\n  - plugin: echo\n    manual: {hint: look, "
                      "timeout: 90, default: skip}\n  - {id: b, plugin: echo, manual: "
                      "{timeout: 1.5}}\n")
    first, second = spec.workflow.steps
    assert first.manual is not None and (first.manual.timeout, first.manual.default) == (
        90, "skip")
    assert second.manual is not None and (second.manual.timeout, second.manual.default) == (
        1.5, "fail")
    text = "\n".join(problems_of(
        "workflow_id: w\nsteps:\n"
        "  - {id: a, plugin: echo, manual: {timeout: 0}}\n"
        "  - {id: b, plugin: echo, manual: {timeout: .inf}}\n"
        "  - {id: c, plugin: echo, manual: {timeout: 604801}}\n"
        "  - {id: d, plugin: echo, manual: {timeout: 5, default: retry}}\n"
        "  - {id: e, plugin: echo, manual: {default: skip}}\n"))
    assert "wf.yaml:3: step 'a', field 'manual.timeout': Input should be greater than 0" in text
    assert "wf.yaml:4: step 'b', field 'manual.timeout'" in text
    assert "timeout is a finite number of seconds, at most 604800 (a week)" in text
    assert "wf.yaml:5: step 'c', field 'manual.timeout'" in text
    assert "wf.yaml:6: step 'd', field 'manual.default': Input should be 'abort', 'skip' or " \
           "'fail'" in text
    assert "wf.yaml:7: step 'e', field 'manual': `default` applies when nobody answers " \
           "within `timeout`" in text
