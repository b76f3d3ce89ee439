"""The ``fastapi-scaffolder`` plugin: writes a FastAPI project that later plugins extend.

The project mounts every module in ``app/routers/`` by itself, so plugins that add endpoints
(``jwt-auth-plugin``, the cache plugins) only add files and never edit ``app/main.py``.
"""

import re
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field

from flowhost_sample_fastapi._project import install_templates, template_files
from flowhost_sdk import InvocationContext, PermanentError, Plugin

_TEMPLATES = files("flowhost_sample_fastapi") / "generated_project"
_APP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A folder holding this file is taken for a scaffolded project and completed, not refused.
_MARKER = "app/main.py"


def known_templates() -> list[str]:
    """The names the ``template`` input accepts."""
    return sorted(entry.name for entry in _TEMPLATES.iterdir() if entry.is_dir())


class FastAPIScaffolder(Plugin):
    """Scaffold a FastAPI project with a health endpoint, settings and a pytest suite."""

    name = "fastapi-scaffolder"
    version = "1.0.0"
    idempotent = True

    class Inputs(BaseModel):
        app_name: str = Field(description="Project folder name, also shown in the API docs")
        template: str = Field(default="minimal", description="Project template")
        directory: str = Field(default=".", description="Folder to create the project in")

    class Outputs(BaseModel):
        project_path: str = Field(description="Absolute path of the project folder")
        files_created: list[str] = Field(
            description="Files of the scaffold, relative to project_path"
        )
        success: bool

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        templates = known_templates()
        if inputs.template not in templates:
            raise PermanentError(
                f"unknown template {inputs.template!r}",
                hint=f"Use one of the known templates: {', '.join(templates)}",
            )
        if not _APP_NAME.fullmatch(inputs.app_name):
            raise PermanentError(
                f"app_name {inputs.app_name!r} is not a usable folder name",
                hint="Start with a letter, then use letters, digits, '-' or '_' (64 at most)",
            )
        project = Path(ctx.workdir, Path(inputs.directory).expanduser(), inputs.app_name).resolve()
        sources = template_files(_TEMPLATES / inputs.template)
        _check_target(project, {relative for relative, _ in sources})

        ctx.progress(0.0, f"scaffolding {project}")
        # Existing files are kept: they may hold the user's edits, and later plugins' work.
        created = install_templates(
            project, sources, {"app_name": inputs.app_name}, ctx, overwrite=False
        )
        return self.Outputs(project_path=str(project), files_created=created, success=True)


def _check_target(project: Path, scaffold_files: set[str]) -> None:
    """Refuse a file, or a folder that holds work that is not a scaffold's."""
    if project.exists() and not project.is_dir():
        raise PermanentError(
            f"{project} exists and is not a folder", hint="Pick another app_name or directory"
        )
    if not project.is_dir() or (project / _MARKER).is_file():
        return
    foreign = sorted(
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.relative_to(project).as_posix() not in scaffold_files
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise PermanentError(
            f"{project} already holds files that are not part of a scaffold: {shown}",
            hint="Pick another app_name or directory, or empty that folder first",
        )
