"""``importable`` and ``command``: checks that run a process, and the runner they share.

A command runs in its own process group with its output in a temporary file; on timeout
the group gets SIGTERM, then SIGKILL, and on cancellation SIGKILL at once. A command that
writes more than ``MAX_OUTPUT_BYTES`` (``yes``) is killed and fails its check: a spec, one
submitted to the daemon too, must not fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Mapping
from typing import IO, Any, Self

from pydantic import Field, field_validator, model_validator

from flowhost.checks.base import CheckContext, _Args
from flowhost.checks.formatting import last_line, short, tail
from flowhost.checks.pytest_summary import parse_pytest_summary
from flowhost.events import CheckResult

_KEEP_BYTES = 256 * 1024  # of a command's output; the pytest summary is at its end
_KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL of a timed-out command's process group
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # written by a command: past it, it is killed
_SIZE_POLL_S = 0.1  # how often the output's size is looked at (``yes`` writes ~1 GB/s)


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


# ---------------------------------------------------------------------------- subprocesses


@dataclasses.dataclass(frozen=True, slots=True)
class _Exited:
    returncode: int
    output: str  # stdout and stderr, interleaved, at most _KEEP_BYTES of its end
    timed_out: bool
    too_much: bool = False  # killed for writing more than MAX_OUTPUT_BYTES


_LIVE_GROUPS: set[int] = set()  # process groups of the commands running now


def kill_running_commands() -> None:
    """SIGKILL every command a check is running: for an exit that cannot wait for the
    checks to be cancelled (a second Ctrl-C). They run in their own sessions, so the
    terminal's signal never reached them."""
    for group in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


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
        _LIVE_GROUPS.add(proc.pid)
        timed_out = too_much = False
        try:
            too_much = await asyncio.wait_for(_wait_bounded(proc, output), timeout)
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
            _LIVE_GROUPS.discard(proc.pid)
        text = await asyncio.to_thread(_read_tail, output)
    assert proc.returncode is not None
    return _Exited(proc.returncode, text, timed_out, too_much)


async def _wait_bounded(proc: asyncio.subprocess.Process, output: IO[bytes]) -> bool:
    """Wait for ``proc`` to exit (False), or kill its group once its ``output`` passed
    ``MAX_OUTPUT_BYTES`` (True)."""
    exited = asyncio.ensure_future(proc.wait())
    try:
        while not (await asyncio.wait((exited,), timeout=_SIZE_POLL_S))[0]:
            if os.fstat(output.fileno()).st_size > MAX_OUTPUT_BYTES:
                _signal_group(proc, signal.SIGKILL)
                await exited
                return True
        return False
    finally:
        exited.cancel()


def _too_much(what: str) -> str:
    return (f"{what} wrote more than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB of output, and "
            "was stopped")


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


_IMPORT_CODE = (
    "import importlib, sys\n"
    "if sys.argv[2]: sys.path.insert(0, sys.argv[2])\n"
    "importlib.import_module(sys.argv[1])\n"
)


class Importable:
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
        output = ctx.redact(exited.output)  # before any shortening can cut a secret in two
        details = {"exit_code": exited.returncode, "output_tail": tail(output, 15)}
        if exited.timed_out:
            message = f"importing {args.module}{where} timed out after {args.timeout:g} s"
            return CheckResult(self.kind, False, message, details=details)
        if exited.too_much:
            message = _too_much(f"importing {args.module}{where}")
            return CheckResult(self.kind, False, message, details=details)
        if exited.returncode != 0:
            reason = last_line(output) or _exit_text(exited.returncode)
            message = f"cannot import {args.module}{where}: {reason}"
            return CheckResult(self.kind, False, message, details=details)
        return CheckResult(self.kind, True, f"{args.module} imports{where}")


def _env_value(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Command:
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
        shown = f"`{short(ctx.redact(shown), 80)}`"
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
        output = ctx.redact(exited.output)  # before any shortening can cut a secret in two
        details: dict[str, Any] = {
            "exit_code": exited.returncode,
            "output_tail": tail(output),
        }
        tests = parse_pytest_summary(output)
        if tests is not None:
            details["test_results"] = tests
        if exited.timed_out:
            message = f"{shown} timed out after {args.timeout:g} s"
            return CheckResult(self.kind, False, message, details={**details, "timed_out": True})
        if exited.too_much:
            return CheckResult(self.kind, False, _too_much(shown), details=details)
        if exited.returncode != 0:
            last = last_line(output)
            message = f"{shown} {_exit_text(exited.returncode)}" + (f": {last}" if last else "")
            return CheckResult(self.kind, False, message, details=details)
        summary = f" ({tests['passed']} passed, {tests['failed']} failed)" if tests else ""
        return CheckResult(self.kind, True, f"{shown} exited 0{summary}", details=details)
