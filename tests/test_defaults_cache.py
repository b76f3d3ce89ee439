"""``defaults: {cache: false}`` turns the cache off for every step that says nothing; a
step's own ``cache:`` still wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _twice(tmp_path: Path, spec: str) -> dict[str, bool]:
    (tmp_path / "wf.yaml").write_text(spec, encoding="utf-8")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "flowhost", "run", "wf.yaml",
                               "--no-progress", "--json-out", "r.json"], cwd=tmp_path,
                              env=dict(os.environ), capture_output=True, text=True, timeout=60,
                              check=False, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
    steps = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["steps"]
    return {step["id"]: step["cached"] for step in steps}


@pytest.mark.parametrize(("defaults", "expected"), [
    ("", {"plain": True, "asks": True, "refuses": False}),
    ("defaults: {cache: true}\n", {"plain": True, "asks": True, "refuses": False}),
    ("defaults: {cache: false}\n", {"plain": False, "asks": True, "refuses": False}),
])
def test_defaults_cache(tmp_path: Path, defaults: str, expected: dict[str, bool]) -> None:
    spec = (f"workflow_id: cached\n{defaults}steps:\n"
            "  - {id: plain, plugin: noop, inputs: {value: 1}}\n"
            "  - {id: asks, plugin: noop, inputs: {value: 2}, cache: true}\n"
            "  - {id: refuses, plugin: noop, inputs: {value: 3}, cache: false}\n")
    assert _twice(tmp_path, spec) == expected


def test_defaults_cache_must_be_a_boolean(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "workflow_id: w\ndefaults: {cache: sometimes}\nsteps:\n  - {plugin: noop}\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "flowhost", "validate", "wf.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "wf.yaml:2: field 'defaults.cache'" in done.stderr


def test_cache_clear_of_an_unknown_plugin_says_so(tmp_path: Path) -> None:
    _twice(tmp_path, "workflow_id: w\nsteps:\n  - {id: a, plugin: noop, inputs: {value: 1}}\n")

    def clear(plugin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flowhost", "cache", "clear", "--plugin",
                               plugin], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)

    typo = clear("nop")
    assert typo.returncode == 2
    assert typo.stderr.strip() == ("flowhost: --plugin nop: no plugin of that name is "
                                   "installed, and nothing of it is cached; did you mean "
                                   "'noop'?")
    assert clear("echo").returncode == 0  # installed, nothing cached: nothing to say
    removed = clear("noop")
    assert removed.returncode == 0 and removed.stdout.startswith("Removed 1 cached result ")
