"""Small file helpers: render a template, write atomically, merge a requirements file."""

import os
import re
import tempfile
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def render(template: str, **values: str) -> str:
    """Replace every ``{{name}}`` in ``template``; a name without a value is a bug."""

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(substitute, template)


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


def write_if_missing(path: Path, content: str) -> bool:
    """Create ``path`` unless it exists (an existing file may hold the user's edits)."""
    if path.exists():
        return False
    write_text_atomic(path, content)
    return True


def _requirement_name(line: str) -> str | None:
    stripped = line.split("#", 1)[0].strip()
    if not stripped or stripped.startswith("-"):
        return None
    match = _REQUIREMENT_NAME.match(stripped)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def merge_requirements(path: Path, required: list[str]) -> bool:
    """Append each requirement whose project is not listed yet; keep every existing line."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    present = {name for name in map(_requirement_name, lines) if name}
    missing: list[str] = []
    for requirement in required:
        name = _requirement_name(requirement)
        if name is not None and name not in present:
            missing.append(requirement)
            present.add(name)
    if not missing and path.exists():
        return False
    write_text_atomic(path, "\n".join([*lines, *missing]) + "\n")
    return True
