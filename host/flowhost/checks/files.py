"""``files_exist`` and ``python_syntax``: checks of files on disk, run in a worker thread."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from typing import Any

from flowhost.checks.base import CheckContext, _PathList
from flowhost.checks.formatting import listing
from flowhost.events import CheckResult
from flowhost.wording import plural

_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


class FilesExistArgs(_PathList):
    pass


class PythonSyntaxArgs(_PathList):
    pass


class FilesExist:
    kind = "files_exist"
    Args = FilesExistArgs

    async def run(self, args: FilesExistArgs, ctx: CheckContext) -> CheckResult:
        paths = args.root
        missing = await asyncio.to_thread(
            lambda: [p for p in paths if not os.path.exists(ctx.resolve(p))]
        )
        if missing:
            message = f"missing {len(missing)} of {len(paths)}: {listing(missing)}"
            return CheckResult(self.kind, False, message, details={"missing": missing})
        shown = paths[0] if len(paths) == 1 else plural(len(paths), "path")
        return CheckResult(self.kind, True, f"{shown} exist{'s' if len(paths) == 1 else ''}")


_COMPILE_LOCK = threading.Lock()  # warnings.catch_warnings is process-wide state


def _python_files(root: str) -> list[str]:
    """Every ``*.py`` under ``root``, skipping hidden dirs, __pycache__ and virtualenvs."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
        )
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return found


def _compile_error(real: str, shown: str) -> str | None:
    try:
        with open(real, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        return f"{shown}: cannot read: {exc.strerror}"
    with _COMPILE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a SyntaxWarning is no syntax error
        try:
            compile(source, shown, "exec", dont_inherit=True)
        except SyntaxError as exc:
            line = f":{exc.lineno}" if exc.lineno else ""
            return f"{shown}{line}: {exc.msg}"
        except ValueError as exc:  # null bytes
            return f"{shown}: {exc}"
    return None


def _syntax_errors(paths: list[str], ctx: CheckContext) -> tuple[int, list[str]]:
    checked, errors = 0, []
    for path in paths:
        real = ctx.resolve(path)
        if os.path.isdir(real):
            files = [(f, os.path.join(path, os.path.relpath(f, real))) for f in _python_files(real)]
        elif os.path.isfile(real):
            files = [(real, path)]
        else:
            errors.append(f"{path}: not found")
            continue
        for file, shown in files:
            checked += 1
            if error := _compile_error(file, shown):
                errors.append(error)
    return checked, errors


class PythonSyntax:
    kind = "python_syntax"
    Args = PythonSyntaxArgs

    async def run(self, args: PythonSyntaxArgs, ctx: CheckContext) -> CheckResult:
        checked, errors = await asyncio.to_thread(_syntax_errors, args.root, ctx)
        details: dict[str, Any] = {"files": checked}
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            details["errors"] = errors[:20]
            return CheckResult(self.kind, False, errors[0] + more, details=details)
        message = f"{plural(checked, 'Python file')} compile{'s' if checked == 1 else ''}"
        return CheckResult(self.kind, True, message, details=details)
