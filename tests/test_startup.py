"""What a `flowhost run` process imports: a local-only workflow needs neither gRPC nor the
terminal view (issue 10: a one-step run within 300 ms)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Runs the CLI as `python -m flowhost` does, then reports which modules it imported.
_WRAPPER = textwrap.dedent("""
    import json, sys
    from flowhost.cli import main

    sys.argv = ["flowhost", *sys.argv[1:]]
    code = main()
    roots = sorted({name.partition(".")[0] for name in sys.modules})
    from flowhost import config, result
    built = [m.__name__ for m in (config.HostConfig, result.RunResult)
             if m.__pydantic_complete__]
    print(json.dumps({"exit": code, "roots": roots, "built": built}), file=sys.stderr)
""")


def _imported_by(args: list[str], cwd: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=cwd,
                          env={**os.environ}, capture_output=True, text=True, timeout=120,
                          check=False)
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


def test_a_local_run_imports_no_grpc(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(
        "workflow_id: one\nsteps:\n  - {id: s0, plugin: noop, inputs: {value: 1}}\n",
        encoding="utf-8")
    report = _imported_by(["run", "one.yaml", "--no-progress", "--state-dir", "state"],
                          tmp_path)
    assert report["exit"] == 0
    roots = report["roots"]
    assert isinstance(roots, list)
    assert "flowhost" in roots and "flowhost_test_plugins" in roots  # the run did happen
    assert "grpc" not in roots
    assert "rich" not in roots  # plain lines (--no-progress, not a terminal) need no rich
    # no flowhost.toml and no --json-out: neither model's validator is built (~10 ms)
    assert report["built"] == []
