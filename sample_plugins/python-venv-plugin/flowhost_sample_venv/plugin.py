"""The ``python-venv`` plugin: a project's own virtual environment, with its requirements.

A project's tests then run with the project's interpreter, whatever ``python`` is first on
``PATH``. Installing needs the package index; when it cannot be reached the call fails as a
transient error (the ladder retries it), and the same plugin with ``use_host: true`` — the
demo's fallback — stands in the interpreter flowhost runs on, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from flowhost_sdk import InvocationContext, PermanentError, Plugin, TransientError

# What pip prints when the index cannot be reached (as opposed to a requirement that is wrong)
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution",
            "Network is unreachable", "No matching distribution found",
            "Could not find a version that satisfies", "ConnectTimeoutError",
            "ReadTimeoutError", "Connection refused", "ProxyError")
_TAIL = 6  # lines of pip's output an error quotes


class PythonVenvPlugin(Plugin):
    """Create PROJECT/.venv and install PROJECT/requirements.txt into it."""

    name = "python-venv"
    version = "1.0.0"
    idempotent = False  # it reads the network; a cached answer could hide a broken index

    class Inputs(BaseModel):
        project_path: str = Field(description="The project (relative: to the run's workdir)")
        requirements: str = Field("requirements.txt",
                                  description="Its requirements file, relative to the project")
        use_host: bool = Field(False, description="Use the interpreter flowhost runs on "
                               "instead (no network needed): its packages stand in")
        install_timeout: float = Field(600, gt=0, description="Seconds pip may take")

    class Outputs(BaseModel):
        python: str = Field(description="The interpreter to run the project with")
        venv: str | None = Field(description="The virtual environment, None with use_host")
        source: str = Field(description='"venv" (its own) or "host" (flowhost\'s interpreter)')
        note: str = Field(description="What was done, in a sentence")

    def invoke(self, inputs: Inputs, ctx: InvocationContext) -> Outputs:
        project = Path(inputs.project_path)
        if not project.is_absolute() and ctx.workdir:
            project = Path(ctx.workdir) / project
        if not project.is_dir():
            raise PermanentError(f"no project at {project}",
                                 hint="project_path must name the project's folder")
        if inputs.use_host:
            note = (f"no environment of its own: using flowhost's interpreter {sys.executable}"
                    " and the packages installed there")
            ctx.progress(1.0, note)
            return self.Outputs(python=sys.executable, venv=None, source="host", note=note)
        requirements = project / inputs.requirements
        if not requirements.is_file():
            raise PermanentError(f"no requirements file at {requirements}")
        venv = project / ".venv"
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        if not python.exists():
            ctx.progress(0.05, f"creating {venv}")
            _run([sys.executable, "-m", "venv", str(venv)], "creating the environment", 300)
        ctx.progress(0.3, f"installing {requirements.name} into {venv}")
        started = time.monotonic()
        _install(python, requirements, inputs.install_timeout)
        note = (f"{venv} has {requirements.name} installed "
                f"({time.monotonic() - started:.1f}s)")
        ctx.progress(1.0, note)
        return self.Outputs(python=str(python), venv=str(venv), source="venv", note=note)


def _install(python: Path, requirements: Path, timeout: float) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
               "--no-input", "--quiet", "--timeout", "15", "--retries", "1",
               "-r", str(requirements)]
    try:
        _run(command, "installing the requirements", timeout)
    except PermanentError as exc:
        if any(sign in str(exc) for sign in _OFFLINE):
            raise TransientError(
                f"cannot install {requirements.name}: the package index cannot be reached "
                f"({_last_line(str(exc))})",
                hint="Check the network, or point pip at a mirror (PIP_INDEX_URL); the "
                     "demo's fallback uses flowhost's own interpreter instead") from None
        raise


def _run(command: list[str], doing: str, timeout: float) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TransientError(f"{doing} took longer than {timeout:g}s") from None
    except OSError as exc:
        raise PermanentError(f"{doing}: cannot run {command[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-_TAIL:])
        raise PermanentError(f"{doing} failed (exit {done.returncode}): {tail}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text
