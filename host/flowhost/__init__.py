"""flowhost: run workflows of plugin steps with validation, recovery and live progress.

    import flowhost

    problems = flowhost.validate("rest-api.yaml")           # [] when valid
    result = flowhost.run_workflow("rest-api.yaml", workdir="/srv/builds/42",
                                   env={"JWT_SECRET": "..."}, on_manual="fail")
    result.status                                           # a flowhost.RunResult

    run = await flowhost.start_run("rest-api.yaml")         # the async API beneath
    async for event in run.events(): ...
    result = await run.result()

The names are loaded on first use, so that ``import flowhost`` (and the CLI's ``--help``)
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowhost.api import (
        Checked,
        prepare_resume,
        prepare_run,
        resume_run,
        run_workflow,
        start_run,
        validate,
    )
    from flowhost.context import RunContext, make_context
    from flowhost.events import Event
    from flowhost.handle import Run
    from flowhost.problems import Problem, SpecError, UserInputError
    from flowhost.result import RunResult
    from flowhost.runs import get_run, list_runs, resolve_intervention

__version__ = "0.1.0"

__all__ = [
    "Checked",
    "Event",
    "Problem",
    "Run",
    "RunContext",
    "RunResult",
    "SpecError",
    "UserInputError",
    "get_run",
    "list_runs",
    "make_context",
    "prepare_resume",
    "prepare_run",
    "resolve_intervention",
    "resume_run",
    "run_workflow",
    "start_run",
    "validate",
]

_HOMES = {
    "Checked": "flowhost.api", "prepare_resume": "flowhost.api", "prepare_run": "flowhost.api",
    "resume_run": "flowhost.api", "run_workflow": "flowhost.api", "start_run": "flowhost.api",
    "validate": "flowhost.api", "RunContext": "flowhost.context",
    "make_context": "flowhost.context", "Event": "flowhost.events", "Run": "flowhost.handle",
    "Problem": "flowhost.problems", "SpecError": "flowhost.problems",
    "UserInputError": "flowhost.problems", "RunResult": "flowhost.result",
    "get_run": "flowhost.runs", "list_runs": "flowhost.runs",
    "resolve_intervention": "flowhost.runs",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowhost' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
