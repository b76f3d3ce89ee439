"""The ``fastapi-scaffolder`` plugin: writes a FastAPI project that later plugins extend.

The project mounts every module in ``app/routers/`` by itself, so plugins that add endpoints
(``jwt-auth-plugin``, the cache plugins) only add files and never edit ``app/main.py``.
"""

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from pydantic import BaseModel, Field

from flowhost_sample_fastapi._files import merge_requirements, render, write_if_missing
from flowhost_sdk import InvocationContext, PermanentError, Plugin

_TEMPLATES: Traversable = files("flowhost_sample_fastapi") / "generated_project"
_SUFFIX = ".tmpl"
# Template files that a wheel could not carry under their real, hidden name.
_RENAMES = {"gitignore": ".gitignore"}
_APP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_REQUIREMENTS = "requirements.txt"
# A folder holding app/main.py is taken for a scaffolded project and completed, not refused.
_MARKER = "app/main.py"


def known_templates() -> list[str]:
    """The names accepted by the ``template`` input."""
    return sorted(entry.name for entry in _TEMPLATES.iterdir() if entry.is_dir())


def _template_files(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """Every ``(project-relative path, template)`` pair under ``root``, sorted by path."""
    found: list[tuple[str, Traversable]] = []
    for entry in root.iterdir():
        if entry.is_dir():
            found.extend(_template_files(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(_SUFFIX):
            name = entry.name.removesuffix(_SUFFIX)
            found.append((f"{prefix}{_RENAMES.get(name, name)}", entry))
    return sorted(found, key=lambda pair: pair[0])


def _existing_files(project: Path) -> set[str]:
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


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
                hint="Use a letter, then letters, digits, '-' or '_' (at most 64 characters)",
            )
        project = (Path(inputs.directory).expanduser() / inputs.app_name).resolve()
        sources = _template_files(_TEMPLATES / inputs.template)
        scaffold_files = [relative for relative, _ in sources]
        self._check_target(project, set(scaffold_files))

        ctx.progress(0.0, f"scaffolding {project}")
        written: list[str] = []
        try:
            for index, (relative, source) in enumerate(sources, start=1):
                content = render(source.read_text(encoding="utf-8"), app_name=inputs.app_name)
                target = project / relative
                if relative == _REQUIREMENTS:
                    changed = merge_requirements(target, content.splitlines())
                else:
                    changed = write_if_missing(target, content)
                if changed:
                    written.append(relative)
                ctx.progress(index / len(sources), f"{'wrote' if changed else 'kept'} {relative}")
        except OSError as exc:
            raise PermanentError(
                f"cannot write the project at {project}: {exc}",
                hint=f"Check that {project.parent} is writable and has free space",
            ) from exc

        kept = len(scaffold_files) - len(written)
        ctx.logger.info(
            "scaffolded %s: %d files written, %d already present", project, len(written), kept
        )
        return self.Outputs(project_path=str(project), files_created=scaffold_files, success=True)

    @staticmethod
    def _check_target(project: Path, scaffold_files: set[str]) -> None:
        """Refuse to write into a file, or into a folder that holds someone else's work."""
        if project.exists() and not project.is_dir():
            raise PermanentError(
                f"{project} exists and is not a folder",
                hint="Pick another app_name or directory",
            )
        if not project.is_dir() or (project / _MARKER).is_file():
            return
        foreign = sorted(_existing_files(project) - scaffold_files)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise PermanentError(
                f"{project} already holds files that are not part of a scaffold: {shown}",
                hint="Pick another app_name or directory, or empty that folder first",
            )
