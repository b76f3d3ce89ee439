"""fastapi-scaffolder: what it writes, what it refuses, and that re-running it is safe."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from flowhost_sample_fastapi._project import merge_requirements
from flowhost_sample_fastapi.plugin import FastAPIScaffolder, known_templates
from flowhost_sample_jwt.plugin import JWTAuthPlugin

from flowhost_sdk import InvocationContext, PermanentError

SCAFFOLD_FILES = [
    ".gitignore",
    "README.md",
    "app/__init__.py",
    "app/config.py",
    "app/main.py",
    "app/routers/__init__.py",
    "app/routers/health.py",
    "pytest.ini",
    "requirements.txt",
    "tests/conftest.py",
    "tests/test_health.py",
]


def scaffold(ctx: InvocationContext, directory: Path, **inputs: str) -> FastAPIScaffolder.Outputs:
    return FastAPIScaffolder().invoke(
        FastAPIScaffolder.Inputs(app_name="shop", directory=str(directory), **inputs), ctx
    )


def snapshot(project: Path) -> dict[str, str]:
    return {
        path.relative_to(project).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(project.rglob("*"))
        if path.is_file()
    }


def test_writes_a_fastapi_project(
    ctx: InvocationContext, tmp_path: Path, progress: list[tuple[float, str]]
) -> None:
    outputs = scaffold(ctx, tmp_path)

    project = tmp_path / "shop"
    assert outputs.success is True
    assert outputs.project_path == str(project.resolve())
    assert outputs.files_created == SCAFFOLD_FILES
    assert sorted(snapshot(project)) == SCAFFOLD_FILES
    main = (project / "app/main.py").read_text(encoding="utf-8")
    assert "FastAPI(" in main and "pkgutil.iter_modules" in main
    assert '@router.get("/health")' in (project / "app/routers/health.py").read_text("utf-8")
    assert 'app_name: str = "shop"' in (project / "app/config.py").read_text("utf-8")
    assert "TestClient" in (project / "tests/test_health.py").read_text("utf-8")
    assert "{{" not in "".join(snapshot(project).values())
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert len(progress) == len(SCAFFOLD_FILES) + 1


def test_defaults_to_the_runs_working_directory_not_the_processes(tmp_path: Path) -> None:
    ctx = InvocationContext(run_id="t", step_id="scaffold", workdir=str(tmp_path))
    outputs = FastAPIScaffolder().invoke(FastAPIScaffolder.Inputs(app_name="shop"), ctx)
    assert outputs.project_path == str((tmp_path / "shop").resolve())
    assert (tmp_path / "shop/app/main.py").is_file()
    nested = FastAPIScaffolder().invoke(
        FastAPIScaffolder.Inputs(app_name="api", directory="builds"), ctx)
    assert nested.project_path == str((tmp_path / "builds" / "api").resolve())


def test_is_declared_idempotent_and_rerunning_changes_nothing(
    ctx: InvocationContext, tmp_path: Path
) -> None:
    assert FastAPIScaffolder.idempotent is True
    first = scaffold(ctx, tmp_path)
    before = snapshot(tmp_path / "shop")
    second = scaffold(ctx, tmp_path)
    assert second == first
    assert snapshot(tmp_path / "shop") == before


def test_rerunning_restores_missing_files_and_keeps_edits_and_plugins_work(
    ctx: InvocationContext, tmp_path: Path
) -> None:
    first = scaffold(ctx, tmp_path)
    project = Path(first.project_path)
    JWTAuthPlugin().invoke(JWTAuthPlugin.Inputs(project_path=str(project)), ctx)
    edited = (project / "app/main.py").read_text("utf-8") + "\n# edited by hand\n"
    (project / "app/main.py").write_text(edited, encoding="utf-8")
    (project / "tests/test_health.py").unlink()
    before = snapshot(project)

    again = scaffold(ctx, tmp_path)

    assert again == first
    after = snapshot(project)
    assert after["app/main.py"] == edited
    assert "pyjwt" in after["requirements.txt"]
    assert after.pop("tests/test_health.py")
    before.pop("tests/test_health.py", None)
    assert after == before


def test_unknown_template_is_refused_with_the_known_ones(
    ctx: InvocationContext, tmp_path: Path
) -> None:
    with pytest.raises(PermanentError) as caught:
        scaffold(ctx, tmp_path, template="enterprise")
    assert "enterprise" in str(caught.value)
    assert known_templates() == ["minimal"]
    assert caught.value.hint is not None and "minimal" in caught.value.hint
    assert not (tmp_path / "shop").exists()


@pytest.mark.parametrize("app_name", ["", "../escape", "a/b", "-flag", "x" * 65])
def test_unusable_app_names_are_refused(
    ctx: InvocationContext, tmp_path: Path, app_name: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        FastAPIScaffolder().invoke(
            FastAPIScaffolder.Inputs(app_name=app_name, directory=str(tmp_path)), ctx
        )
    assert caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_a_folder_holding_other_work_is_refused(ctx: InvocationContext, tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop/notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(PermanentError) as caught:
        scaffold(ctx, tmp_path)
    assert "notes.txt" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["notes.txt"]


def test_a_file_in_the_way_is_refused(ctx: InvocationContext, tmp_path: Path) -> None:
    (tmp_path / "shop").write_text("", encoding="utf-8")
    with pytest.raises(PermanentError, match="not a folder"):
        scaffold(ctx, tmp_path)


def test_requirements_merged_by_parallel_plugins_keep_every_line(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fastapi>=0.110\n", encoding="utf-8")
    start = threading.Barrier(8)

    def add(index: int) -> None:
        start.wait()
        merge_requirements(requirements, [f"package-{index}>=1", "fastapi>=0.110"])

    threads = [threading.Thread(target=add, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = requirements.read_text("utf-8").splitlines()
    assert lines[0] == "fastapi>=0.110"
    assert sorted(lines[1:]) == sorted(f"package-{index}>=1" for index in range(8))
