from __future__ import annotations

import pytest

from flowhost.problems import SpecError
from flowhost.source import parse_document
from flowhost.spec import parse_spec


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
    assert found[0].startswith("wf.yaml:") and "malformed YAML" in found[0]


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
