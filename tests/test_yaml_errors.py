"""A YAML error points where the cause is: the bracket that was never closed (YAML notices
it only where something else comes), or the tab YAML cannot indent with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("text", "said"), [
    ("workflow_id: y\nsteps:\n  - {id: a, plugin: noop,\n     inputs: {value: 1}\n"
     "  - {id: b, plugin: noop}\n",
     "wf.yaml:3:5: the '{' opened here is not closed (YAML noticed at line 5, column 3: did "
     "not find expected ',' or '}') — add the missing '}' (or a ',' between items) on this "
     "line or the next ones"),
    ("workflow_id: y\nsteps:\n  - id: a\n    plugin: noop\n    inputs: [1, 2\n  - id: b\n",
     "wf.yaml:5:13: the '[' opened here is not closed"),
    ("workflow_id: y\nsteps:\n\t- id: a\n\t  plugin: noop\n",
     "wf.yaml:3:1: a tab character: YAML indents with spaces only — replace the tabs with "
     "spaces"),
    ("workflow_id: y\nsteps:\n  - id: a\n    plugin: noop\n    inputs:\n\tvalue: 1\n",
     "wf.yaml:6:1: a tab character: YAML indents with spaces only"),
    ("workflow_id: y\nsteps: [{id: a, plugin: noop}\n",  # noticed at the end of the file
     "wf.yaml:2:8: the '[' opened here is not closed (YAML noticed at line 3, column 1"),
    ("workflow_id: y\nsteps: [{id: a, plugin: noop} x]\n",  # noticed on its own line
     "wf.yaml:2:31: malformed YAML/JSON: while parsing a flow sequence"),
])
def test_a_yaml_error_points_at_its_cause(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "wf.yaml").write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "validate", "wf.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert said in done.stderr, done.stderr


_READ_BY_THE_SUBSET = [
    "workflow_id: y\nsteps:\n  - {id: a, plugin: noop, inputz: {value: 1}}\n",
    "workflow_id: y\nsteps:\n  - id: a\n    plugin: noop\n    inputs:\n      value: $b.value\n",
    "workflow_id: y\nsteps:\n  - {id: a, plugin: noop}\n  - {id: a, plugin: noop}\n",
    "workflow_id: y\nsteps:\n  - {id: 1a, plugin: noop, timeout: -1}\n",
    "workflow_id: y\nsteps:\n  - id: a\n    plugin: numbers\n    inputs:\n      count: x\n"
    "  - id: b\n    plugin: numbers\n    inputs: {count: $a.label}\n",
    "workflow_id: y\nsteps:\n- plugin: echo\n  inputs: {text: $env.NOPE_NOT_SET}\n"
    "- plugin: nope\n",
    "# a comment\nworkflow_id: y\n\nsteps:\n  - {id: a, plugin: noop, needs: [b]}\n"
    "  - {id: b, plugin: noop, inputs: {value: $a.value}}\n",
    "workflow_id: y\nsteps: []\n", "workflow_id: y\n", "steps:\n  - plugin: noop\n",
]


@pytest.mark.parametrize("text", _READ_BY_THE_SUBSET)
def test_a_spec_read_by_the_subset_has_the_problems_and_lines_of_the_slow_path(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML subset (flowhost.yaml_subset) reads these; what ``validate`` says of them, line
    numbers included, is what it says when libyaml reads them."""
    from flowhost import yaml_subset
    from flowhost.api import validate
    from flowhost.yaml_common import SLOW

    assert yaml_subset.read(text) is not SLOW
    fast = [str(problem) for problem in validate(text, spec_name="wf.yaml", env={})]
    monkeypatch.setattr(yaml_subset, "read", lambda text: SLOW)
    assert [str(problem) for problem in validate(text, spec_name="wf.yaml", env={})] == fast
    assert fast  # each has a problem to say
