"""Helpers shared by the flowhost sample plugins.

Each sample distribution carries an identical copy of this module, since a plugin may depend
on nothing of flowhost but ``flowhost_sdk``. It renders ``{{name}}`` placeholders, walks a
package's template folder, writes files atomically, merges ``requirements.txt`` under a lock and
recognises a project made by ``fastapi-scaffolder``.
"""

import os
import re
import sys
import tempfile
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path

from flowhost_sdk import InvocationContext, PermanentError

if sys.platform != "win32":
    import fcntl

TEMPLATE_SUFFIX = ".tmpl"
REQUIREMENTS = "requirements.txt"
# Files that every scaffolded project has; extension plugins refuse folders without them.
SCAFFOLD_FILES = (
    "app/main.py",
    "app/config.py",
    "app/routers/__init__.py",
    "tests/conftest.py",
    REQUIREMENTS,
)
# Template names a wheel could not carry under their real, hidden name.
_RENAMES = {"gitignore": ".gitignore"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{name}}`` in ``template`` by ``values[name]``."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def template_files(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """Every ``(project-relative path, template)`` under ``root``, sorted by path."""
    found: list[tuple[str, Traversable]] = []
    for entry in root.iterdir():
        if entry.is_dir():
            found.extend(template_files(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            name = entry.name.removesuffix(TEMPLATE_SUFFIX)
            found.append((f"{prefix}{_RENAMES.get(name, name)}", entry))
    return sorted(found, key=lambda pair: pair[0])


def write_text_atomic(path: Path, content: str) -> None:
    """Write ``content`` so that ``path`` is never seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_file(path: Path, content: str, *, overwrite: bool) -> bool:
    """Write ``path`` unless it already holds ``content`` (or exists, without ``overwrite``).

    Returns whether the file was written.
    """
    if path.exists() and (not overwrite or path.read_text(encoding="utf-8") == content):
        return False
    write_text_atomic(path, content)
    return True


def _requirement_name(line: str) -> str | None:
    """The normalised project name a requirements line asks for, if any."""
    text = line.split("#", 1)[0].strip()
    match = _REQUIREMENT_NAME.match(text)
    if text.startswith("-") or match is None:
        return None
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def merge_requirements(path: Path, required: list[str]) -> bool:
    """Append each requirement whose project is not listed yet, keeping every existing line.

    Plugins of one workflow may run in parallel, so the read-modify-write happens under an
    exclusive lock on the file. Returns whether the file was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8", newline="\n") as handle:
        if sys.platform != "win32":
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        lines = handle.read().splitlines()
        present = {name for name in map(_requirement_name, lines) if name}
        missing: list[str] = []
        for requirement in required:
            name = _requirement_name(requirement)
            if name is not None and name not in present:
                missing.append(requirement)
                present.add(name)
        if not missing:
            return False
        handle.seek(0)
        handle.truncate()
        handle.write("\n".join([*lines, *missing]) + "\n")
    return True


def install_templates(
    project: Path,
    templates: list[tuple[str, Traversable]],
    values: Mapping[str, str],
    ctx: InvocationContext,
    *,
    overwrite: bool,
    progress_from: float = 0.0,
) -> list[str]:
    """Render ``templates`` into ``project``, reporting progress; returns their paths.

    A ``requirements.txt`` template is merged into the project's file rather than replacing
    it, so every plugin's requirements add up. Other files are written when missing, or
    when their content differs and ``overwrite`` is set.
    """
    written = 0
    try:
        for index, (relative, source) in enumerate(templates, start=1):
            content = render(source.read_text(encoding="utf-8"), values)
            target = project / relative
            if relative == REQUIREMENTS:
                changed = merge_requirements(target, content.splitlines())
            else:
                changed = write_file(target, content, overwrite=overwrite)
            if changed:
                written += 1
            fraction = progress_from + (1.0 - progress_from) * index / len(templates)
            ctx.progress(fraction, f"{'wrote' if changed else 'kept'} {relative}")
    except OSError as exc:
        raise PermanentError(
            f"cannot write into {project}: {exc}",
            hint=f"Check that {project} is writable and the disk has free space",
        ) from exc
    ctx.logger.info(
        "%s: %d files written, %d already up to date",
        project,
        written,
        len(templates) - written,
    )
    return [relative for relative, _ in templates]


def require_scaffolded_project(project_path: str, workdir: str = ".") -> Path:
    """The project folder (a relative ``project_path`` is in the run's ``workdir``), or a
    PermanentError when fastapi-scaffolder did not make it."""
    project = Path(workdir, Path(project_path).expanduser()).resolve()
    if not project.is_dir():
        raise PermanentError(
            f"project_path {project} is not a folder",
            hint="Run fastapi-scaffolder first and pass its project_path output",
        )
    missing = [name for name in SCAFFOLD_FILES if not (project / name).is_file()]
    if missing:
        listed = ", ".join(missing)
        raise PermanentError(
            f"{project} is not a project made by fastapi-scaffolder (missing {listed})",
            hint="Run fastapi-scaffolder first and pass its project_path output",
        )
    return project
