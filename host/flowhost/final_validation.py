"""The run's ``final_validation``: its checks, once every step is done, on the outputs of
all of them (an ``output`` check reads ``step_id.field``), and the ``test_results`` that
pytest summaries in their output add up to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flowhost.events import (
    CheckResult,
    Event,
    FinalValidationFinished,
    FinalValidationStarted,
)
from flowhost.ladder import run_checks
from flowhost.plan import Plan
from flowhost.redact import Redactor
from flowhost.refs import Scope


async def final_validation(plan: Plan, run_id: str, outputs: dict[str, Any],
                           env: Mapping[str, str], redactor: Redactor, workdir: str | None,
                           emit: Callable[[Event], None]) -> bool:
    """Run the checks with their events; whether all passed. Cancelling it stops the checks
    (a command check's process ends with it)."""
    checks = plan.final_checks
    emit(FinalValidationStarted(run_id=run_id, total_checks=len(checks)))
    results = await run_checks(checks, Scope(outputs, env), outputs, dict(env), redactor,
                               workdir=workdir)
    emit(FinalValidationFinished(run_id=run_id, results=results,
                                 test_results=_test_results(results)))
    return all(r.passed for r in results)


def _test_results(results: tuple[CheckResult, ...]) -> dict[str, int] | None:
    tests = [r.details["test_results"] for r in results if "test_results" in r.details]
    if not tests:
        return None
    keys = sorted({key for t in tests for key in t})
    return {key: sum(t.get(key, 0) for t in tests) for key in keys}
