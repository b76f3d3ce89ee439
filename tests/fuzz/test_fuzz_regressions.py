"""What the fuzz tests found, kept as plain tests: each the failing example as it was found,
and its neighbours."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import assert_ends_well, run_cli, workdir

QUICK = "workflow_id: quick\nsteps:\n  - {id: a, plugin: echo, inputs: {text: hi}}\n"


@pytest.mark.parametrize("argv", [
    ["plan", "quick.yaml", "--set=--"],  # as found: "internal error: AttributeError"
    ["validate", "quick.yaml", "--set=--"],
    ["runs", "list", "--limit=--"],
    ["runs", "resolve", "r", "a", "--action=--"],
])
def test_a_flag_given_as_flag_equals_dashdash_is_the_text_dashdash(argv: list[str]) -> None:
    """Python 3.11's argparse made the value of ``--flag=--`` an empty list."""
    with workdir() as where:
        (where / "quick.yaml").write_text(QUICK, encoding="utf-8")
        ending = run_cli(argv)
    assert_ends_well(ending, names=("'--'",))
    assert ending.code == 2 and "'--'" in ending.err


def test_a_json_out_named_dashdash_is_written() -> None:
    with workdir() as where:
        (where / "quick.yaml").write_text(QUICK, encoding="utf-8")
        ending = run_cli(["run", "quick.yaml", "--no-progress", "--json-out=--"])
        assert ending.code == 0, ending
        assert Path(where / "--").read_text(encoding="utf-8").startswith("{")


LONG_PATH = "b/" * 2100  # past PATH_MAX: "File name too long"


def test_a_spec_path_too_long_is_named_once_and_shortened() -> None:
    """As found: the message held the 4,200-character path twice (8,500 characters)."""
    with workdir():
        ending = run_cli(["validate", LONG_PATH])
    assert_ends_well(ending, names=("(4,200 characters): cannot read the file: File name "
                                    "too long",))
    assert len(ending.err) < 300
