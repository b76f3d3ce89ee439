"""A third party's validation check kind (entry-point group ``flowhost.validators``): the
``file_contains`` check of the fixture distribution, used by real workflows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flowhost.checks import CheckContext, known_kinds, run_check

WriteSpec = Callable[..., Path]


def flowhost(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd, env=os.environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_kind_is_listed_without_importing_its_module(tmp_path: Path) -> None:
    code = ("import sys\nfrom flowhost.checks import known_kinds\n"
            "print('file_contains' in known_kinds(), "
            "'flowhost_test_plugins.validators' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "False"]


async def test_the_check_runs_through_run_check(tmp_path: Path) -> None:
    assert "file_contains" in known_kinds()
    (tmp_path / "main.py").write_text("app = FastAPI()\n", encoding="utf-8")
    context = CheckContext(workdir=str(tmp_path))
    found = await run_check("file_contains", {"path": "main.py", "text": "FastAPI("}, context)
    assert found.passed and found.kind == "file_contains"
    assert found.message == "main.py contains 'FastAPI('"
    missing = await run_check("file_contains", {"path": "main.py", "text": "Flask("}, context)
    assert not missing.passed and "does not contain 'Flask('" in missing.message
    absent = await run_check("file_contains", {"path": "nope.py", "text": "x"}, context)
    assert not absent.passed and absent.message.startswith("cannot read nope.py")
    bad = await run_check("file_contains", {"path": "main.py"}, context)
    assert not bad.passed and bad.message == "file_contains check: text is required"


SPEC = """
workflow_id: third-party-check
steps:
  - id: writer
    plugin: file-writer
    inputs: {{directory: "{directory}", content: "x = 1\\n"}}
    retry: {{max_attempts: 1}}
    manual: false
    validation:
      - file_contains: {{path: "${{writer.path}}", text: "{text}"}}
final_validation:
  - file_contains: {{path: "{directory}/out.py", text: "x ="}}
"""


def test_a_workflow_uses_it_end_to_end(write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = write_spec(SPEC.format(directory=tmp_path / "out", text="x = 1"))
    out = tmp_path / "result.json"
    done = flowhost("run", str(spec), "--no-progress", "--json-out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    [check] = result["steps"][0]["validation"]
    assert (check["kind"], check["passed"]) == ("file_contains", True)
    assert check["message"] == f"{tmp_path / 'out' / 'out.py'} contains 'x = 1'"
    assert [c["kind"] for c in result["final_validation"]] == ["file_contains"]
    assert result["final_validation"][0]["passed"] is True


def test_a_failing_third_party_check_fails_the_step(write_spec: WriteSpec,
                                                    tmp_path: Path) -> None:
    spec = write_spec(SPEC.format(directory=tmp_path / "out", text="y = 2"))
    out = tmp_path / "result.json"
    done = flowhost("run", str(spec), "--no-progress", "--json-out", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    step = json.loads(out.read_text(encoding="utf-8"))["steps"][0]
    assert step["status"] == "failed"
    assert "does not contain 'y = 2'" in step["validation"][0]["message"]
    assert "does not contain 'y = 2'" in done.stdout


def test_validate_reports_a_misspelt_kind(write_spec: WriteSpec, tmp_path: Path) -> None:
    spec = write_spec(SPEC.format(directory=tmp_path, text="x").replace(
        "- file_contains: {path: \"${writer", "- file_contain: {path: \"${writer"))
    done = flowhost("validate", str(spec), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{spec}:9: step 'writer', field 'validation.0.file_contain'" in done.stderr
    assert "unknown check kind 'file_contain'; did you mean 'file_contains'?" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
