"""The validation check kinds of a step's ``validation`` and the workflow's ``final_validation``.

A check in the spec is a one-key mapping ``{kind: args}``. The built-in kinds are
``files_exist``, ``python_syntax``, ``importable``, ``http_ok``, ``command`` and ``output``;
more come from the entry-point group ``flowhost.validators`` (the entry point's name is the
kind, its object a class implementing :class:`Check`). Entry points are listed from metadata
alone and imported only when a spec uses their kind; a built-in name always wins.

``parse_check_args`` validates args statically (``flowhost validate``), when string values
may still hold unresolved ``${...}`` references, so paths and urls are plain ``str`` fields.
``run_check`` never raises for a failing check: a bad kind or args, a broken validator or a
crash inside a check all come back as ``CheckResult(passed=False, ...)``, with every message
and detail string passed through ``CheckContext.redact``.

``test_results`` (from a pytest summary line in a ``command``'s output) follows pytest's JUnit
XML report: ``passed`` counts passed and xpassed tests, ``failed`` counts failed tests and
errors (``errors`` alone is kept too), ``skipped`` counts skipped and xfailed tests, and
``total = passed + failed + skipped``. Deselected tests, warnings, reruns and subtests are
not tests and are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import http.client
import inspect
import ipaddress
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import IO, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from flowhost.events import CheckResult

__all__ = [
    "ENTRY_POINT_GROUP",
    "Check",
    "CheckArgsError",
    "CheckContext",
    "CheckError",
    "CheckLoadError",
    "CommandArgs",
    "FilesExistArgs",
    "HttpOkArgs",
    "ImportableArgs",
    "OutputArgs",
    "PythonSyntaxArgs",
    "UnknownCheckKind",
    "get_check",
    "known_kinds",
    "parse_check_args",
    "parse_pytest_summary",
    "run_check",
]

ENTRY_POINT_GROUP = "flowhost.validators"
OUTPUT_TAIL_LINES = 40
_KEEP_BYTES = 256 * 1024  # of a command's output; the pytest summary is at its end
_KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL of a timed-out command's process group
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


def _identity(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class CheckContext:
    """What a check may know about where it runs.

    ``workdir`` (default: the process's cwd) is what relative paths, ``command``'s default
    ``cwd`` and ``importable``'s ``path`` are resolved against.
    """

    outputs: dict[str, Any] | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ)
    redact: Callable[[str], str] = _identity
    workdir: str | None = None

    def resolve(self, path: str) -> str:
        return os.path.join(self.workdir, path) if self.workdir and path else path


@runtime_checkable
class Check(Protocol):
    """What built-in kinds and ``flowhost.validators`` entry points implement.

    ``run`` may be ``async`` or plain (a plain one runs in a worker thread). It receives an
    instance of ``Args`` and returns a ``CheckResult``; ``run_check`` fills in its ``kind``
    and ``duration_s`` and redacts it.
    """

    @property
    def kind(self) -> str: ...

    @property
    def Args(self) -> type[BaseModel]: ...  # noqa: N802

    def run(self, args: Any, ctx: CheckContext) -> CheckResult | Awaitable[CheckResult]: ...


# --------------------------------------------------------------------------------- errors


class CheckError(Exception):
    """A check's spec is wrong (unknown kind, bad args, broken validator); found before it runs."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class UnknownCheckKind(CheckError):
    def __init__(self, kind: str, known: list[str]) -> None:
        self.known = known
        close = difflib.get_close_matches(kind, known, n=1)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(kind, f"unknown check kind {kind!r}{hint} (known: {', '.join(known)})")


class CheckArgsError(CheckError):
    """``field`` is the first offending field's dotted path (None for a whole-args problem)."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(kind, message)
        self.field = field


class CheckLoadError(CheckError):
    """A ``flowhost.validators`` entry point failed to import or is not a check."""


# ----------------------------------------------------------------------------- args models


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # a bare value instead of a mapping means this field: `command: "pytest -q"`
    shorthand_field: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if cls.shorthand_field and isinstance(data, str | list):
            return {cls.shorthand_field: data}
        return data


class _PathList(RootModel[list[str]]):
    """A list of paths; a single string is taken as a list of one."""

    root: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_path(cls, data: Any) -> Any:
        return [data] if isinstance(data, str) else data


class FilesExistArgs(_PathList):
    pass


class PythonSyntaxArgs(_PathList):
    pass


class ImportableArgs(_Args):
    shorthand_field = "module"
    module: str = Field(min_length=1)
    path: str | None = None
    timeout: float = Field(60.0, gt=0)

    @field_validator("module")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if "$" not in value and not all(p.isidentifier() for p in value.split(".")):
            raise ValueError(f"{value!r} is not a dotted module name")
        return value


class HttpOkArgs(_Args):
    shorthand_field = "url"
    url: str = Field(min_length=1)
    status: int = Field(200, ge=100, le=599)
    timeout: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if "$" not in value and not re.match(r"https?://", value, re.IGNORECASE):
            raise ValueError(f"{value!r} must start with http:// or https://")
        return value


class CommandArgs(_Args):
    shorthand_field = "run"
    run: str | list[str | int | float]
    cwd: str | None = None
    timeout: float = Field(300.0, gt=0)
    env: dict[str, str | bool | int | float] = Field(default_factory=dict)
    shell: bool = False

    @field_validator("run")
    @classmethod
    def _not_empty(cls, value: str | list[str | int | float]) -> str | list[str | int | float]:
        if not value or (isinstance(value, str) and not value.strip()):
            raise ValueError("the command is empty")
        return value

    @model_validator(mode="after")
    def _splittable(self) -> Self:
        if isinstance(self.run, str) and not self.shell:
            try:
                shlex.split(self.run)
            except ValueError as exc:
                raise ValueError(f"run: cannot split {self.run!r}: {exc}") from None
        return self


JsonType = Literal["string", "integer", "number", "boolean", "array", "object", "null"]
_ASSERTIONS = {"equals": "equals", "matches": "matches", "in_": "in", "type_": "type"}


class OutputArgs(_Args):
    field: str = Field(min_length=1)
    equals: Any = None
    matches: str | None = None
    in_: list[Any] | None = Field(None, alias="in")
    type_: JsonType | None = Field(None, alias="type")

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [alias for name, alias in _ASSERTIONS.items() if name in self.model_fields_set]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ValueError(f"exactly one of equals, matches, in, type is required{got}")
        return self


# ------------------------------------------------------------------------------- helpers


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _listing(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return _short(lines[-1].strip()) if lines else ""


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _redact_value(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v, redact) for v in value]
    return value


# ---------------------------------------------------------------------------- subprocesses


@dataclasses.dataclass(frozen=True, slots=True)
class _Exited:
    returncode: int
    output: str  # stdout and stderr, interleaved, at most _KEEP_BYTES of its end
    timed_out: bool


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # start_new_session=True: the group id is the child's pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _read_tail(output: IO[bytes]) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - _KEEP_BYTES, 0))
    return output.read().decode("utf-8", "replace").replace("\r\n", "\n")


async def _run_process(
    cmd: str | list[str], *, cwd: str | None, env: Mapping[str, str], timeout: float
) -> _Exited:
    """Runs ``cmd`` (a string: through the shell) in its own process group.

    On timeout the group gets SIGTERM, then SIGKILL after a grace period; on cancellation,
    SIGKILL. Output goes to a temporary file rather than a pipe, so that a process the
    command leaves running (``server &``) cannot keep the check waiting for end-of-file; such
    leftovers are not killed when the command itself exits 0. Raises FileNotFoundError /
    PermissionError when the executable cannot be started.
    """
    with tempfile.TemporaryFile() as output:
        options: dict[str, Any] = {
            "stdin": asyncio.subprocess.DEVNULL,
            "stdout": output,
            "stderr": asyncio.subprocess.STDOUT,
            "cwd": cwd,
            "env": dict(env),
            "start_new_session": True,
        }
        if isinstance(cmd, str):
            proc = await asyncio.create_subprocess_shell(cmd, **options)
        else:
            proc = await asyncio.create_subprocess_exec(*cmd, **options)
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
            _signal_group(proc, signal.SIGKILL)  # whatever of the group ignored SIGTERM
            await proc.wait()
        finally:
            if proc.returncode is None:  # cancelled: never leave the command running
                _signal_group(proc, signal.SIGKILL)
                await proc.wait()
        text = await asyncio.to_thread(_read_tail, output)
    assert proc.returncode is not None
    return _Exited(proc.returncode, text, timed_out)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


# ------------------------------------------------------------------------- pytest summary

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ITEM = r"(?:no tests ran|\d+ [a-z]+(?: [a-z]+)?)"
_SUMMARY = re.compile(
    rf"^[= \t]*(?P<body>{_ITEM}(?:, {_ITEM})*) in \d+(?:\.\d+)?\s*s(?:econds)?\b[^=\n]*[= \t]*$",
    re.MULTILINE,
)
_COUNT = re.compile(r"(\d+) ([a-z]+(?: [a-z]+)?)")
_PYTEST_WORDS = frozenset(
    {"passed", "failed", "error", "errors", "skipped", "deselected", "xfailed", "xpassed"}
    | {"warning", "warnings", "rerun", "subtests passed", "subtests failed", "subtests skipped"}
)


def parse_pytest_summary(text: str) -> dict[str, int] | None:
    """The counts of the last pytest summary line in ``text`` (see the module doc), or None.

    Understands ``=== 3 failed, 21 passed, 1 skipped in 0.52s ===``, the ``-q`` form
    ``21 passed in 0.30s``, ``no tests ran``, errors, xfailed/xpassed and colored output.
    """
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    for match in reversed(list(_SUMMARY.finditer(text))):
        body = match["body"]
        counts: dict[str, int] = {}
        for number, word in _COUNT.findall(body):
            counts[word] = counts.get(word, 0) + int(number)
        if "no tests ran" not in body and not counts.keys() & _PYTEST_WORDS:
            continue  # "copied 3 files in 0.2s" is no pytest summary
        errors = counts.get("error", 0) + counts.get("errors", 0)
        passed = counts.get("passed", 0) + counts.get("xpassed", 0)
        failed = counts.get("failed", 0) + errors
        skipped = counts.get("skipped", 0) + counts.get("xfailed", 0)
        return {
            "total": passed + failed + skipped,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "errors": errors,
        }
    return None


# ---------------------------------------------------------------------------- the checks


class _FilesExist:
    kind = "files_exist"
    Args = FilesExistArgs

    async def run(self, args: FilesExistArgs, ctx: CheckContext) -> CheckResult:
        paths = args.root
        missing = await asyncio.to_thread(
            lambda: [p for p in paths if not os.path.exists(ctx.resolve(p))]
        )
        if missing:
            message = f"missing {len(missing)} of {len(paths)}: {_listing(missing)}"
            return CheckResult(self.kind, False, message, details={"missing": missing})
        shown = paths[0] if len(paths) == 1 else _plural(len(paths), "path")
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


class _PythonSyntax:
    kind = "python_syntax"
    Args = PythonSyntaxArgs

    async def run(self, args: PythonSyntaxArgs, ctx: CheckContext) -> CheckResult:
        checked, errors = await asyncio.to_thread(_syntax_errors, args.root, ctx)
        details: dict[str, Any] = {"files": checked}
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            details["errors"] = errors[:20]
            return CheckResult(self.kind, False, errors[0] + more, details=details)
        message = f"{_plural(checked, 'Python file')} compile{'s' if checked == 1 else ''}"
        return CheckResult(self.kind, True, message, details=details)


_IMPORT_CODE = (
    "import importlib, sys\n"
    "if sys.argv[2]: sys.path.insert(0, sys.argv[2])\n"
    "importlib.import_module(sys.argv[1])\n"
)


class _Importable:
    kind = "importable"
    Args = ImportableArgs

    async def run(self, args: ImportableArgs, ctx: CheckContext) -> CheckResult:
        path = os.path.abspath(ctx.resolve(args.path)) if args.path else ""
        where = f" from {args.path}" if args.path else ""
        if path and not os.path.isdir(path):
            message = f"cannot import {args.module}: no directory {args.path}"
            return CheckResult(self.kind, False, message)
        # -B: checking must not write __pycache__ into the checked project
        argv = [sys.executable, "-B", "-c", _IMPORT_CODE, args.module, path]
        exited = await _run_process(argv, cwd=ctx.workdir, env=ctx.env, timeout=args.timeout)
        details = {"exit_code": exited.returncode, "output_tail": _tail(exited.output, 15)}
        if exited.timed_out:
            message = f"importing {args.module}{where} timed out after {args.timeout:g} s"
            return CheckResult(self.kind, False, message, details=details)
        if exited.returncode != 0:
            reason = _last_line(exited.output) or _exit_text(exited.returncode)
            message = f"cannot import {args.module}{where}: {reason}"
            return CheckResult(self.kind, False, message, details=details)
        return CheckResult(self.kind, True, f"{args.module} imports{where}")


class _HttpError(Exception):
    pass


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_get(url: str, timeout: float) -> tuple[int, str]:
    """GET ``url``: (status, start of the body); raises _HttpError when there is no answer."""
    request = urllib.request.Request(url, headers={"User-Agent": "flowhost-check"})
    # a proxy from the environment must not stand between us and a local service
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read(500).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                body = exc.read(500).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                body = ""
            return exc.code, body
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise _HttpError("connection refused") from exc
        if isinstance(reason, TimeoutError):
            raise _HttpError(f"no response within {timeout:g} s") from exc
        raise _HttpError(str(getattr(reason, "strerror", None) or reason)) from exc
    except TimeoutError as exc:
        raise _HttpError(f"no response within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _HttpError(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        raise _HttpError(f"invalid URL: {exc}") from exc


class _HttpOk:
    kind = "http_ok"
    Args = HttpOkArgs

    async def run(self, args: HttpOkArgs, ctx: CheckContext) -> CheckResult:
        try:
            status, body = await asyncio.wait_for(
                asyncio.to_thread(_http_get, args.url, args.timeout), args.timeout + 5
            )
        except TimeoutError:
            return CheckResult(
                self.kind, False, f"GET {args.url}: no response within {args.timeout:g} s"
            )
        except _HttpError as exc:
            return CheckResult(self.kind, False, f"GET {args.url}: {exc}")
        if status != args.status:
            message = f"GET {args.url} returned {status}, expected {args.status}"
            return CheckResult(
                self.kind, False, message, details={"status": status, "body": _short(body, 300)}
            )
        return CheckResult(self.kind, True, f"GET {args.url} returned {status}")


def _env_value(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Command:
    kind = "command"
    Args = CommandArgs

    async def run(self, args: CommandArgs, ctx: CheckContext) -> CheckResult:
        cmd: str | list[str]
        if args.shell:
            cmd = args.run if isinstance(args.run, str) else shlex.join(map(str, args.run))
            shown = cmd
        else:
            try:
                cmd = shlex.split(args.run) if isinstance(args.run, str) else [*map(str, args.run)]
            except ValueError as exc:
                return CheckResult(self.kind, False, f"cannot split {args.run!r}: {exc}")
            shown = args.run if isinstance(args.run, str) else shlex.join(cmd)
        shown = f"`{_short(shown, 80)}`"
        cwd = ctx.resolve(args.cwd) if args.cwd else ctx.workdir
        if cwd and not os.path.isdir(cwd):
            return CheckResult(self.kind, False, f"{shown}: no directory {args.cwd or cwd}")
        env = {**ctx.env, **{k: _env_value(v) for k, v in args.env.items()}}
        try:
            exited = await _run_process(cmd, cwd=cwd, env=env, timeout=args.timeout)
        except (FileNotFoundError, PermissionError) as exc:
            program = cmd[0] if isinstance(cmd, list) else shown
            problem = "not found" if isinstance(exc, FileNotFoundError) else "not executable"
            return CheckResult(self.kind, False, f"command {problem}: {program}")
        details: dict[str, Any] = {
            "exit_code": exited.returncode,
            "output_tail": _tail(exited.output),
        }
        tests = parse_pytest_summary(exited.output)
        if tests is not None:
            details["test_results"] = tests
        if exited.timed_out:
            message = f"{shown} timed out after {args.timeout:g} s"
            return CheckResult(self.kind, False, message, details={**details, "timed_out": True})
        if exited.returncode != 0:
            last = _last_line(exited.output)
            message = f"{shown} {_exit_text(exited.returncode)}" + (f": {last}" if last else "")
            return CheckResult(self.kind, False, message, details=details)
        summary = f" ({tests['passed']} passed, {tests['failed']} failed)" if tests else ""
        return CheckResult(self.kind, True, f"{shown} exited 0{summary}", details=details)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _json_equal(a: Any, b: Any) -> bool:
    """``==`` except that a boolean never equals a number (``True != 1``), as in JSON."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _show(value: Any) -> str:
    return _short(json.dumps(value, default=str), 80)


def _lookup(outputs: Any, dotted: str) -> Any:
    """The value at ``a.b.0`` in ``outputs``; raises LookupError with a readable message."""
    current = outputs
    walked: list[str] = []
    for part in dotted.split("."):
        here = ".".join([*walked, part])
        if isinstance(current, Mapping):
            if part not in current:
                keys = _listing(sorted(map(str, current)), 10) or "none"
                raise LookupError(f"no field {here!r} in the outputs (fields there: {keys})")
            current = current[part]
        elif isinstance(current, list | tuple):
            try:
                current = current[int(part)]
            except (ValueError, IndexError):
                raise LookupError(
                    f"no item {here!r}: {'.'.join(walked) or 'outputs'} is a list of {len(current)}"
                ) from None
        else:
            raise LookupError(f"no field {here!r}: {'.'.join(walked)} is {_json_type(current)}")
        walked.append(part)
    return current


class _Output:
    kind = "output"
    Args = OutputArgs

    async def run(self, args: OutputArgs, ctx: CheckContext) -> CheckResult:
        if ctx.outputs is None:
            message = "no step outputs here: output checks belong in a step's validation"
            return CheckResult(self.kind, False, message)
        try:
            value = _lookup(ctx.outputs, args.field)
        except LookupError as exc:
            return CheckResult(self.kind, False, str(exc.args[0]))
        name = args.field
        if args.type_ is not None:
            actual = _json_type(value)
            ok = actual == args.type_ or (args.type_ == "number" and actual == "integer")
            message = f"{name} is {actual}" + ("" if ok else f", expected {args.type_}")
        elif args.matches is not None:
            ok = re.search(args.matches, str(value)) is not None
            verb = "matches" if ok else "does not match"
            message = f"{name} = {_show(value)} {verb} /{args.matches}/"
        elif args.in_ is not None:
            ok = any(_json_equal(value, option) for option in args.in_)
            message = f"{name} = {_show(value)} is {'' if ok else 'not '}one of {_show(args.in_)}"
        else:
            ok = _json_equal(value, args.equals)
            expected = "" if ok else f", expected {_show(args.equals)}"
            message = f"{name} = {_show(value)}{expected}"
        return CheckResult(self.kind, ok, message)


_BUILTINS: dict[str, Check] = {
    check.kind: check
    for check in (_FilesExist(), _PythonSyntax(), _Importable(), _HttpOk(), _Command(), _Output())
}
_LOADED: dict[str, Check] = {}  # entry-point checks, imported on first use


# ------------------------------------------------------------------------------ registry


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


def _field_name(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _args_error(kind: str, model: type[BaseModel], error: ValidationError) -> CheckArgsError:
    problems: list[str] = []
    fields: list[str] = []
    for item in error.errors(include_url=False):
        name = _field_name(item["loc"])
        text = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(f.alias or n for n, f in model.model_fields.items())
            text = f"unknown field {name!r} (expected one of: {allowed})"
        elif item["type"] == "missing":
            text = f"{name} is required"
        elif name:
            text = f"{name}: {text}"
        problems.append(text)
        if name:
            fields.append(name)
    message = f"{kind} check: {'; '.join(problems)}"
    return CheckArgsError(kind, message, fields[0] if fields else None)


def parse_check_args(kind: str, args: Any) -> BaseModel:
    """Validated args for ``kind``; raises CheckArgsError naming the field (or CheckError)."""
    model = get_check(kind).Args
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise _args_error(kind, model, exc) from None


async def run_check(kind: str, args: Any, ctx: CheckContext | None = None) -> CheckResult:
    """Runs one check; a failing, misconfigured or crashing check is a failed CheckResult."""
    ctx = ctx or CheckContext()
    started = time.perf_counter()
    try:
        check = get_check(kind)
        parsed = args if isinstance(args, check.Args) else parse_check_args(kind, args)
        run = check.run
        outcome: Any = (
            run(parsed, ctx)
            if inspect.iscoroutinefunction(run)
            else await asyncio.to_thread(run, parsed, ctx)
        )
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, CheckResult):
            result = outcome
        else:
            message = f"{kind} check returned {type(outcome).__name__}, not a CheckResult"
            result = CheckResult(kind, False, message)
    except CheckError as exc:
        result = CheckResult(kind, False, exc.message)
    except Exception as exc:
        result = CheckResult(kind, False, f"{kind} check crashed: {type(exc).__name__}: {exc}")
    return dataclasses.replace(
        result,
        kind=kind,
        message=ctx.redact(result.message),
        details=_redact_value(result.details, ctx.redact),
        duration_s=time.perf_counter() - started,
    )
