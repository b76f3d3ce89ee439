"""Kind → check: the built-in kinds, and ``flowhost.validators`` entry points.

Entry points are listed from metadata alone and imported only when a kind is first used; a
built-in name always wins over an entry point of the same name.
"""

from __future__ import annotations

from importlib import metadata

from pydantic import BaseModel

from flowhost.checks.base import ENTRY_POINT_GROUP, Check, CheckLoadError, UnknownCheckKind
from flowhost.checks.files import FilesExist, PythonSyntax
from flowhost.checks.http import HttpOk
from flowhost.checks.output import Output
from flowhost.checks.process import Command, Importable

_BUILTINS: dict[str, Check] = {
    check.kind: check
    for check in (FilesExist(), PythonSyntax(), Importable(), HttpOk(), Command(), Output())
}
_LOADED: dict[str, Check] = {}  # entry-point checks, imported on first use


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    return found


def known_kinds() -> list[str]:
    """Built-in kinds and ``flowhost.validators`` entry-point names, without importing any."""
    return sorted(_BUILTINS.keys() | _entry_points().keys())


def _load(kind: str, entry_point: metadata.EntryPoint) -> Check:
    where = f"validator {kind!r} ({entry_point.value})"
    try:
        loaded = entry_point.load()
        check = loaded() if isinstance(loaded, type) else loaded
    except Exception as exc:
        raise CheckLoadError(kind, f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    model = getattr(check, "Args", None)
    is_model = isinstance(model, type) and issubclass(model, BaseModel)
    if not is_model or not callable(getattr(check, "run", None)) or not isinstance(check, Check):
        raise CheckLoadError(
            kind,
            f"{where} is not a check: it needs `kind`, `Args` (a pydantic model class) "
            "and `run(args, ctx)`",
        )
    return check


def get_check(kind: str) -> Check:
    """The check for ``kind``; raises UnknownCheckKind or CheckLoadError."""
    check = _BUILTINS.get(kind) or _LOADED.get(kind)
    if check is not None:
        return check
    entry_point = _entry_points().get(kind)
    if entry_point is None:
        raise UnknownCheckKind(kind, known_kinds())
    check = _LOADED[kind] = _load(kind, entry_point)
    return check
