"""Static checks: everything wrong with a spec is found before a step runs, all at once."""

from __future__ import annotations

import pytest

from flowhost.catalog import Catalog
from flowhost.problems import SpecError
from flowhost.spec_loading import parse_spec
from flowhost.static import check


def plan_of(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return check(parse_spec(text, "wf.yaml"), Catalog(), env or {})


def problems(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SpecError) as info:
        plan_of(text, env)
    return "\n".join(str(p) for p in info.value.problems)


def test_valid_chain_plans_levels() -> None:
    plan = plan_of("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 3}}
  - {id: b, plugin: numbers, inputs: {count: $a.count}}
  - {id: c, plugin: echo, inputs: {text: "${a.label}"}}
  - {id: d, plugin: echo, inputs: {text: x}, needs: [b, c]}
""")
    assert plan.levels == [["a"], ["b", "c"], ["d"]]
    assert plan.steps["d"].deps == ("b", "c")
    assert plan.steps["a"].dependents == ["b", "c"]


def test_unknown_plugin_suggests() -> None:
    text = problems("workflow_id: w\nsteps:\n  - plugin: ecko\n    inputs: {text: a}\n")
    assert "wf.yaml:3: step 'ecko', field 'plugin': plugin 'ecko': no plugin" in text
    assert "did you mean 'echo'?" in text


def test_broken_plugin_is_reported_but_others_are_checked() -> None:
    text = problems("""
workflow_id: w
steps:
  - plugin: broken-import
  - {plugin: echo, inputs: {txt: a}}
""")
    assert "ModuleNotFoundError" in text
    assert "echo has no input 'txt'" in text and "did you mean 'text'?" in text


def test_all_reference_problems_at_once() -> None:
    text = problems("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 2}}
  - id: b
    plugin: numbers
    inputs:
      count: $a.label
      ratio: $scafolder.x
      flag: $a.cuont
  - {id: c, plugin: echo, inputs: {}}
  - {id: d, plugin: echo, inputs: {text: "${env.FLOWHOST_UNSET_VAR}"}, needs: [zz]}
""")
    assert "$a.label is string, but the input expects integer" in text
    assert "unknown step 'scafolder'" in text
    assert "the outputs of numbers have no field 'cuont'" in text and "did you mean 'count'" in text
    assert "required input 'text' of echo is missing" in text
    assert "FLOWHOST_UNSET_VAR is not set" in text
    assert "needs unknown step 'zz'" in text
    assert "wf.yaml:8: step 'b', field 'inputs.count'" in text


def test_literal_types_are_checked() -> None:
    text = problems("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: lots, ratio: "0.5", flag: 3}}
""")
    assert "value 'lots' is rejected" in text
    assert "ratio" not in text  # a quoted number is fine, as pydantic accepts it
    assert "value 3 is rejected" in text


def test_list_index_references_are_typed() -> None:
    plan_of("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 2}}
  - {id: b, plugin: numbers, inputs: {count: $a.items.0}}
""")
    text = problems("""
workflow_id: w
steps:
  - {id: a, plugin: numbers, inputs: {count: 2}}
  - {id: b, plugin: echo, inputs: {text: $a.items}}
""")
    assert "$a.items is array, but the input expects string" in text


def test_cycles_are_named() -> None:
    text = problems("""
workflow_id: w
steps:
  - {id: a, plugin: echo, inputs: {text: $c.text}}
  - {id: b, plugin: echo, inputs: {text: $a.text}}
  - {id: c, plugin: echo, inputs: {text: $b.text}}
  - {id: d, plugin: echo, inputs: {text: $d.text}}
""")
    assert "dependency cycle: a → c → b → a" in text
    assert "cannot use its own outputs" in text


def test_checks_are_validated_statically() -> None:
    text = problems("""
workflow_id: w
steps:
  - plugin: echo
    inputs: {text: a}
    validation:
      - files_exits: [x]
      - output: {field: text, equals: a, bogus: 1}
final_validation:
  - command: {run: "true", cwd: "${nope.path}"}
""")
    assert "files_exits" in text and "files_exist" in text
    assert "bogus" in text
    assert "unknown step 'nope'" in text


def test_fallback_inputs_and_outputs_are_checked() -> None:
    text = problems("""
workflow_id: w
steps:
  - id: a
    plugin: numbers
    inputs: {count: 2}
    fallback:
      - plugin: echo
        inputs: {text: $inputs.count, tags: $inputs.nothing}
  - {id: b, plugin: echo, inputs: {text: $a.label}}
""")
    assert "$inputs.count is integer, but the input expects string" in text
    assert "the primary's inputs have no field 'nothing'" in text
    assert "outputs of echo (fallback of step 'a') have no field 'label'" in text


def test_inputs_namespace_outside_fallback() -> None:
    text = problems("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: {text: $inputs.x}}\n")
    assert "$inputs can only be used in a fallback" in text


def test_secrets_are_collected() -> None:
    plan = plan_of("workflow_id: w\nsteps:\n  - {plugin: echo, inputs: {text: '${secret.TOK}'}}\n",
                   {"TOK": "abc"})
    assert plan.secret_names == {"TOK"}
    assert plan.redactor({"TOK": "abc"}).text("key=abc") == "key=***"


@pytest.mark.parametrize(("schema", "accepts_others"), [
    ({}, True),  # says nothing: checks nothing
    ({"type": "object"}, True),
    ({"type": "object", "additionalProperties": False}, False),
    ({"properties": {"n": {"type": "integer"}}}, False),  # listed: the complete set
    ({"properties": {"n": {}}, "additionalProperties": True}, True),
    ({"properties": {"n": {}}, "additionalProperties": {"type": "string"}}, True),
])
def test_which_input_schemas_accept_unlisted_names(schema: dict[str, object],
                                                   accepts_others: bool) -> None:
    from flowhost.schema import input_fields

    assert input_fields(schema, schema)[2] is accepts_others


def test_output_checks_name_fields_that_exist() -> None:
    found = problems("""
workflow_id: w
steps:
  - id: a
    plugin: echo
    inputs: {text: hi}
    validation: [{output: {field: txet, equals: hi}}, {output: {field: text, equals: hi}}]
final_validation:
  - output: {field: a.lenght, equals: 2}
  - output: {field: b.text, equals: hi}
  - output: {field: a.length, equals: 2}
""")
    assert "output field 'txet': the outputs of echo have no field 'txet'" in found
    assert "did you mean 'text'" in found
    assert "output field 'a.lenght': the outputs of echo have no field 'lenght'" in found
    assert "output field 'b.text': unknown step 'b'" in found
    assert len(found.splitlines()) == 3, found


@pytest.mark.parametrize(("count", "accepted"), [
    ('"12"', True), ('"1_000"', True), ('"+5"', True), ('"3.0"', True),
    ('"1e3"', False), ('"1.5"', False), ('"twelve"', False),
])
def test_numbers_in_text_are_accepted_only_as_pydantic_reads_them(count: str,
                                                                 accepted: bool) -> None:
    text = f"workflow_id: w\nsteps:\n  - {{plugin: numbers, inputs: {{count: {count}}}}}\n"
    if accepted:
        plan_of(text)
    else:
        assert "count" in problems(text)


def test_a_rejected_value_from_set_says_it_came_from_set() -> None:
    text = ("workflow_id: w\nsteps:\n  - {id: n, plugin: numbers, inputs: {count: 2}}\n"
            "  - {id: e, plugin: echo, inputs: {text: $n.label}}\n")
    with pytest.raises(SpecError) as caught:
        check(parse_spec(text, "wf.yaml", overrides=["n.count=abc"]), Catalog(), {})
    found = "\n".join(str(p) for p in caught.value.problems)
    assert "wf.yaml:3: step 'n', field 'inputs.count'" in found
    assert "(the value given by --set n.count=abc)" in found
    assert len(caught.value.problems) == 1  # the reference to n.label is fine


def _outcome(text: str, env: dict[str, str]) -> object:
    """What checking ``text`` gives: its problems, or the plan's steps as they would run."""
    try:
        plan = plan_of(text, env)
    except SpecError as exc:
        return [str(p) for p in exc.problems]
    return plan.levels, [(ps.id, ps.deps, ps.inputs, ps.dependents, ps.level, ps.cache)
                         for ps in plan.steps.values()], plan.secret_names


def _references_specs() -> list[str]:
    """Specs whose steps read each other's outputs many times over, well and badly."""
    chain = [f"  - {{id: s{i}, plugin: numbers, inputs: {{count: $s{i - 1}.count}}}}"
             for i in range(1, 6)]
    return [
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain) + "\n",
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain).replace("$s3.count", "$s3.label") + "\n",  # a string for an int
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain).replace("$s2.count", "$s2.nope") + "\n",
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain).replace("$s4.count", "$s5.count") + "\n",  # a cycle
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain).replace("$s1.count", "$s2.count") + "\n",  # its own outputs
        "workflow_id: w\nsteps:\n  - {id: s0, plugin: numbers, inputs: {count: 1}}\n"
        + "\n".join(chain).replace("$s2.count", "$nope.count") + "\n",
        "workflow_id: w\nsteps:\n"
        "  - {id: a, plugin: numbers, inputs: {count: 2}, fallback: [{plugin: echo}]}\n"
        "  - {id: b, plugin: numbers, inputs: {count: $a.count}}\n"
        "  - {id: c, plugin: numbers, inputs: {count: $a.count}}\n"
        "  - {id: d, plugin: echo, inputs: {text: $a.count}}\n"
        "  - {id: e, plugin: echo, inputs: {text: $a.count}}\n",
        "workflow_id: w\nsteps:\n"
        "  - {id: a, plugin: numbers, inputs: {count: 2}}\n"
        "  - {id: b, plugin: echo, inputs: {text: $a.label}}\n"
        "  - {id: c, plugin: echo, inputs: {text: $a.label}}\n"
        "  - {id: d, plugin: echo, inputs: {text: $a.count}}\n"
        "  - {id: e, plugin: echo, inputs: {text: $secret.TOKEN}}\n"
        "  - {id: f, plugin: echo, inputs: {text: $env.HOME}}\n"
        "  - {id: g, plugin: echo, inputs: {text: $env.HOME}}\n",
        "workflow_id: w\nsteps:\n"  # the same field of producers with and without fallbacks
        "  - {id: a, plugin: numbers, inputs: {count: 2}, fallback: [{plugin: echo}]}\n"
        "  - {id: b, plugin: numbers, inputs: {count: 1}}\n"
        "  - {id: c, plugin: numbers, inputs: {count: $a.count}}\n"
        "  - {id: d, plugin: numbers, inputs: {count: $b.count}}\n"
        "  - {id: e, plugin: numbers, inputs: {count: $a.count}}\n"
        "  - {id: f, plugin: nope, inputs: {count: 1}}\n"  # a plugin that does not load
        "  - {id: g, plugin: numbers, inputs: {count: $f.count}}\n"
        "  - {id: h, plugin: numbers, inputs: {count: $f.count}}\n"
        "  - {id: i, plugin: numbers, inputs: {count: $i.count}}\n"
        "  - {id: j, plugin: numbers, inputs: {count: $i.count}}\n",
    ]


@pytest.mark.parametrize("text", _references_specs())
def test_references_known_to_fit_are_checked_as_the_others(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut for a reference like one checked already (``_known_fit``) changes
    nothing: the same problems, or the same plan, as without it."""
    from flowhost import static_steps

    env = {"TOKEN": "t"}
    fast = _outcome(text, env)
    monkeypatch.setattr(static_steps.StepChecker, "_known_fit", lambda *args: False)
    assert _outcome(text, env) == fast


def test_a_chain_takes_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowhost import static_steps

    answers: list[bool] = []
    known_fit = static_steps.StepChecker._known_fit

    def counted(*args: object) -> bool:
        answers.append(known_fit(*args))  # type: ignore[arg-type]
        return answers[-1]

    monkeypatch.setattr(static_steps.StepChecker, "_known_fit", counted)
    _outcome(_references_specs()[0], {})
    assert answers == [False, True, True, True, True]  # the first one is checked in full
