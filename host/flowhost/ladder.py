"""Everything that happens around one plugin call: the attempt, its timeout, its checks.

This is the one place that wraps every call the same way, local or remote. Today a step
gets one attempt of its primary plugin; retries with backoff, fallbacks and manual
intervention plug in here (``Ladder.run``), without the engine knowing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from flowhost import checks as check_kinds
from flowhost.events import AttemptFailed, AttemptStarted, CheckResult, EventBus, StepProgress
from flowhost.invokers import Invoker
from flowhost.plan import PlannedCheck, PlannedStep
from flowhost.redact import Redactor
from flowhost.refs import ResolveError, Scope, resolve
from flowhost_sdk import InvocationContext, PluginError


@dataclass(slots=True)
class CallOutcome:
    """How the ladder ended for one step."""

    ok: bool
    used_plugin: str
    attempts: int
    outputs: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    hint: str | None = None
    validation: tuple[CheckResult, ...] = ()
    cancelled: bool = False
    cached: bool = False


class AttemptError(Exception):
    """One failed attempt, classified for the ladder."""

    def __init__(self, kind: str, error_type: str, message: str, hint: str | None,
                 validation: tuple[CheckResult, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.error_type = error_type
        self.message = message
        self.hint = hint
        self.validation = validation


async def run_checks(checks: list[PlannedCheck], scope: Scope, outputs: dict[str, Any] | None,
                     env: dict[str, str], redactor: Redactor) -> tuple[CheckResult, ...]:
    results = []
    context = check_kinds.CheckContext(outputs=outputs, env=env, redact=redactor.text)
    for planned in checks:
        try:
            args = resolve(planned.args, scope)
        except ResolveError as exc:
            results.append(CheckResult(planned.kind, False, redactor.text(str(exc))))
            continue
        results.append(await check_kinds.run_check(planned.kind, args, context))
    return tuple(results)


class Ladder:
    def __init__(self, *, run_id: str, bus: EventBus, env: dict[str, str], redactor: Redactor,
                 outputs: dict[str, Any],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.run_id = run_id
        self.bus = bus
        self.env = env
        self.redactor = redactor
        self.outputs = outputs  # shared with the engine: step id -> outputs
        self.sleep = sleep
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()

    async def run(self, step: PlannedStep, inputs: dict[str, Any]) -> CallOutcome:
        invoker = step.invoker
        try:
            outputs, validation = await self.attempt(step, invoker, inputs, 1)
        except AttemptError as failure:
            return CallOutcome(False, invoker.name, 1, error=failure.message,
                               error_type=failure.error_type, hint=failure.hint,
                               validation=failure.validation)
        return CallOutcome(True, invoker.name, 1, outputs=outputs, validation=validation)

    async def attempt(self, step: PlannedStep, invoker: Invoker, inputs: dict[str, Any],
                      attempt: int) -> tuple[dict[str, Any], tuple[CheckResult, ...]]:
        """One call plus the step's checks; raises AttemptError after emitting AttemptFailed."""
        run_id, step_id = self.run_id, step.id
        if attempt > 1 or invoker is not step.invoker:
            self.bus.emit(AttemptStarted(run_id=run_id, step_id=step_id, plugin=invoker.name,
                                         attempt=attempt, transport=invoker.transport))
        started = time.monotonic()
        timeout = step.timeout
        ctx = InvocationContext(
            run_id=run_id, step_id=step_id, attempt=attempt,
            deadline=started + timeout if timeout is not None else None,
            on_progress=partial(self._progress, step_id),
        )
        validation: tuple[CheckResult, ...] = ()
        try:
            try:
                if timeout is None:
                    outputs = await invoker.invoke(inputs, ctx)
                else:
                    async with asyncio.timeout(timeout):
                        outputs = await invoker.invoke(inputs, ctx)
            except TimeoutError:
                ctx.cancel()
                raise AttemptError("timeout", "TimeoutError",
                                   f"timed out after {timeout:g}s", None) from None
            except PluginError as exc:
                raise AttemptError(exc.kind, type(exc).__name__, str(exc) or type(exc).__name__,
                                   exc.hint) from None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise AttemptError("permanent", type(exc).__name__, str(exc) or repr(exc),
                                   None) from None
            if step.checks:
                self.outputs[step_id] = outputs  # checks may reference the step's own outputs
                scope = Scope(self.outputs, self.env)
                try:
                    validation = await run_checks(step.checks, scope, outputs, self.env,
                                                  self.redactor)
                finally:
                    del self.outputs[step_id]
                failed = [r for r in validation if not r.passed]
                if failed:
                    text = "; ".join(f"{r.kind}: {r.message}" for r in failed)
                    raise AttemptError("validation", "ValidationFailed",
                                       f"validation failed: {text}", None, validation)
            return outputs, validation
        except AttemptError as failure:
            failure.message = self.redactor.text(failure.message)
            self.bus.emit(AttemptFailed(
                run_id=run_id, step_id=step_id, plugin=invoker.name, attempt=attempt,
                error_type=failure.error_type, error_kind=failure.kind,  # type: ignore[arg-type]
                message=failure.message, hint=failure.hint,
                duration_s=time.monotonic() - started))
            raise

    def _progress(self, step_id: str, fraction: float, message: str) -> None:
        """``ctx.progress`` of a plugin: sync plugins call it from their worker thread."""
        event = StepProgress(run_id=self.run_id, step_id=step_id, fraction=fraction,
                             message=self.redactor.text(message))
        if threading.get_ident() == self._loop_thread:
            self.bus.emit(event)
        else:
            self._loop.call_soon_threadsafe(self.bus.emit, event)
