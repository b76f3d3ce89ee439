"""The recovery ladder: everything that happens around the calls of one step.

Every call, local or remote, goes through ``Ladder.run`` the same way: attempts with a
fresh timeout each and the step's checks (level 1: retries with backoff), then each
fallback plugin with its own retry budget (level 2), then a human's decision (level 3). What
to do after each failure is decided by the pure ``recovery.decide``; this module applies it,
with an injected ``sleep`` and random source so backoff is tested exactly.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from flowhost.breaker import Breakers, Change
from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    BreakerChanged,
    CheckResult,
    EventBus,
    FallbackChosen,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    StepProgress,
)
from flowhost.hints import HintRegistry, choose_hint
from flowhost.intervene import (
    AttemptSummary,
    Intervener,
    InterventionRequest,
    PolicyIntervener,
    Resolution,
)
from flowhost.invokers import Invoker
from flowhost.outcome import CallOutcome
from flowhost.plan import PlannedCheck, PlannedFallback, PlannedStep
from flowhost.plugin_log import RedactingLogger
from flowhost.recovery import decide
from flowhost.redact import Redactor
from flowhost.refs import ResolveError, Scope, resolve
from flowhost.tracebacks import plugin_traceback
from flowhost_sdk import InvocationContext, PluginError, TransientError


class AttemptError(Exception):
    """One failed attempt, classified for the ladder."""

    def __init__(self, kind: str, error_type: str, message: str, hint: str | None,
                 validation: tuple[CheckResult, ...] = (),
                 retry_after: float | None = None, traceback: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.kind = kind
        self.error_type = error_type
        self.message = message
        self.hint = hint
        self.validation = validation
        self.retry_after = retry_after
        self.summary: AttemptSummary | None = None


def _host_cancelled() -> bool:
    """Whether the current task is being cancelled (rather than a plugin raising
    ``CancelledError`` of its own accord)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def run_checks(checks: list[PlannedCheck], scope: Scope, outputs: dict[str, Any] | None,
                     env: dict[str, str], redactor: Redactor, deadline: float | None = None,
                     workdir: str | None = None) -> tuple[CheckResult, ...]:
    from flowhost import checks as check_kinds  # imported by the first step with checks

    results = []
    context = check_kinds.CheckContext(outputs=outputs, env=env, redact=redactor.text,
                                       deadline=deadline, workdir=workdir)
    for planned in checks:
        try:
            args = resolve(planned.args, scope)
        except ResolveError as exc:
            results.append(CheckResult(planned.kind, False, redactor.text(str(exc))))
            continue
        results.append(await check_kinds.run_check(planned.kind, args, context))
    return tuple(results)


def _failure(exc: BaseException, ctx: InvocationContext,
             timeout: float | None) -> BaseException:
    """What an exception out of a plugin's call means: an AttemptError saying how the call
    failed, or ``exc`` itself when the host is cancelling the call (to be raised on).

    A plain function, not a coroutine around the call: the call is awaited right in
    ``Ladder.attempt``, one coroutine fewer for every step."""
    if isinstance(exc, TimeoutError):
        ctx.cancel()
        return AttemptError("timeout", "TimeoutError", f"timed out after {timeout:g}s", None)
    if isinstance(exc, PluginError):
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        return AttemptError(exc.kind, type(exc).__name__, str(exc) or type(exc).__name__,
                            exc.hint, retry_after=retry_after)
    if isinstance(exc, asyncio.CancelledError):
        if _host_cancelled():
            return exc  # a timeout, Ctrl-C or an abort: the host stops this call
        return AttemptError("permanent", "CancelledError", "the plugin raised CancelledError "
                            "itself (nothing had cancelled it)", None)
    if isinstance(exc, Exception):  # a bug of the plugin: its author needs the traceback
        return AttemptError("permanent", type(exc).__name__, str(exc) or repr(exc), None,
                            traceback=plugin_traceback(exc))
    # KeyboardInterrupt, SystemExit and the like come from the plugin: the CLI takes Ctrl-C
    # through the event loop's signal handlers, never as an exception inside a call. They
    # fail this attempt, not the process.
    return AttemptError("permanent", type(exc).__name__, f"the plugin raised "
                        f"{type(exc).__name__}" + (f": {exc}" if str(exc) else ""),
                        None, traceback=plugin_traceback(exc))


class Ladder:
    def __init__(self, *, run_id: str, bus: EventBus, env: dict[str, str], redactor: Redactor,
                 outputs: dict[str, Any], breakers: Breakers | None = None,
                 intervener: Intervener | None = None, hints: HintRegistry | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rand: Callable[[], float] = random.random, workdir: str | None = None) -> None:
        self.run_id = run_id
        self.workdir = workdir
        self.bus = bus
        self.env = env
        self.redactor = redactor
        self.outputs = outputs  # shared with the engine: step id -> outputs
        self.breakers = breakers or Breakers(None)
        self.intervener: Intervener = intervener or PolicyIntervener("fail")
        self.hints = hints or HintRegistry()
        self.sleep = sleep
        self.rand = rand
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()

    # -- the three levels --------------------------------------------------------------
    async def run(self, step: PlannedStep, inputs: dict[str, Any],
                  before: int = 0) -> CallOutcome:
        """``before``: the step's attempts in earlier processes of the run (a resume, a
        person's retry decided meanwhile), so its attempts are numbered on from there."""
        first: AttemptError | None = None
        if self.breakers.policy is None:
            # The common case, first attempt of the primary, without the ladder's bookkeeping.
            try:
                outputs, validation = await self.attempt(step, step.invoker, inputs,
                                                         before + 1)
            except AttemptError as failure:
                first = failure
            else:
                return CallOutcome("success", step.invoker.name, 1, outputs, validation)
        history: list[AttemptSummary] = []
        while True:
            outcome = await self._climb(step, inputs, history, first, before)
            first = None
            if outcome.ok or not outcome.escalate:
                return outcome
            resolution = await self._ask(step, outcome, history)
            if resolution.action == "retry":
                continue  # the whole ladder again, with fresh budgets
            outcome.escalate = False
            outcome.decided_by = resolution.by
            if resolution.action == "wait":
                outcome.ending = "waiting"
            elif resolution.action == "skip":
                outcome.ending, outcome.outputs = "skipped", resolution.outputs
            elif resolution.action == "abort":
                outcome.ending = "aborted"
            return outcome  # "fail": it stays failed, and its on_failure decides

    async def _climb(self, step: PlannedStep, inputs: dict[str, Any],
                     history: list[AttemptSummary], first: AttemptError | None,
                     before: int = 0) -> CallOutcome:
        """Levels 1 and 2: the primary plugin, then each fallback, each with its retries.
        ``first`` is the primary's first attempt when ``run`` already made it."""
        manual = step.step.manual is not None
        fallbacks = step.fallbacks
        last: CallOutcome | None = None
        previous = step.invoker.name
        for index in range(len(fallbacks) + 1):
            fallback = fallbacks[index - 1] if index else None
            invoker = fallback.invoker if fallback is not None else step.invoker
            if fallback is not None:
                reason = last.error if last is not None and last.error else "primary failed"
                self.bus.emit(FallbackChosen(run_id=self.run_id, step_id=step.id,
                                             plugin=previous, fallback=invoker.name,
                                             reason=reason, index=index))
            previous = invoker.name
            allowed, change = self.breakers.allow(invoker.name)
            self._breaker_event(change)
            if not allowed:
                last = CallOutcome("failed", invoker.name, len(history),
                                   error=f"circuit breaker of {invoker.name} is open",
                                   error_type="CircuitOpen")
                continue
            try:
                call_inputs = inputs if fallback is None else self._fallback_inputs(
                    fallback, inputs)
            except ResolveError as exc:
                last = CallOutcome("failed", invoker.name, len(history),
                                   error=self.redactor.text(str(exc)), error_type="ResolveError")
                continue
            last, final = await self._retried(step, invoker, call_inputs, history, first,
                                              before, fallbacks_left=len(fallbacks) - index)
            first = None
            if final:
                return last
        assert last is not None
        last.escalate = manual
        return last

    async def _retried(self, step: PlannedStep, invoker: Invoker, call_inputs: dict[str, Any],
                       history: list[AttemptSummary], first: AttemptError | None, before: int,
                       *, fallbacks_left: int) -> tuple[CallOutcome, bool]:
        """One plugin within its retry budget: its outcome, and whether the ladder ends with
        it (False: the next fallback is tried)."""
        manual = step.step.manual is not None
        attempt = 1
        while True:
            try:
                if first is not None:
                    failure, first = first, None
                    raise failure
                # The step's count (``len(history) + 1``: every plugin, and a person's
                # retries) is what events, the prompt and the result show; ``attempt``
                # is this plugin's own, within its retry budget.
                outputs, validation = await self.attempt(
                    step, invoker, call_inputs, before + len(history) + 1, attempt)
            except AttemptError as failure:
                assert failure.summary is not None
                history.append(failure.summary)
                self._breaker_event(self.breakers.record(invoker.name, ok=False))
                last = CallOutcome("failed", invoker.name, len(history), error=failure.message,
                                   error_type=failure.error_type, hint=failure.hint,
                                   validation=failure.validation)
                decision = decide(kind=failure.kind, attempt=attempt,  # type: ignore[arg-type]
                                  policy=step.retry, fallbacks_left=fallbacks_left,
                                  manual=manual, retry_after=failure.retry_after,
                                  rand=self.rand)
                if decision.action == "retry" and self.breakers.state(invoker.name) != "open":
                    self.bus.emit(RetryScheduled(run_id=self.run_id, step_id=step.id,
                                                 plugin=invoker.name,
                                                 next_attempt=before + len(history) + 1,
                                                 delay_s=decision.delay_s,
                                                 plugin_attempt=attempt + 1,
                                                 max_attempts=step.retry.max_attempts))
                    if decision.delay_s > 0:
                        await self.sleep(decision.delay_s)
                    attempt += 1
                    continue
                if decision.action == "give_up":
                    return last, True
                if decision.action == "manual":  # asked for, or nothing is left to try
                    last.escalate = True
                    return last, True
                if fallbacks_left:  # level 2, or a retry that the open breaker forbids
                    return last, False
                last.escalate = manual
                return last, True
            self._breaker_event(self.breakers.record(invoker.name, ok=True))
            return CallOutcome("success", invoker.name, len(history) + 1, outputs=outputs,
                               validation=validation), True

    def _fallback_inputs(self, fallback: PlannedFallback, inputs: dict[str, Any]) -> dict[str, Any]:
        """Inputs for a fallback: its own (``$inputs.x`` = the primary's), or else the
        primary's inputs restricted to the fields the fallback declares."""
        if fallback.inputs is not None:
            scope = Scope(self.outputs, self.env, inputs=inputs)
            converted: dict[str, Any] = resolve(fallback.inputs, scope)
            return converted
        fields = fallback.invoker.input_schema.get("properties")
        if not isinstance(fields, dict):
            return dict(inputs)
        return {key: value for key, value in inputs.items() if key in fields}

    async def _ask(self, step: PlannedStep, outcome: CallOutcome,
                   history: list[AttemptSummary]) -> Resolution:
        """Level 3: request a decision, record it."""
        error = outcome.error or "unknown error"
        error_type = outcome.error_type or "Error"
        manual_hint = step.step.manual.hint if step.step.manual is not None else None
        hint = outcome.hint or choose_hint(None, manual_hint, self.hints, error_type, error)
        hint = self.redactor.text(hint) if hint else hint
        manual = step.step.manual
        timeout = manual.timeout if manual is not None else None
        asked = InterventionRequested(
            run_id=self.run_id, step_id=step.id, plugin=outcome.used_plugin, error=error,
            error_type=error_type, hint=hint, attempts=len(history), timeout_s=timeout,
            default=manual.default if manual is not None and timeout is not None else None)
        self.bus.emit(asked)  # (committed: its seq and time are the question's for good)
        purpose = f": {step.step.purpose}" if step.step.purpose else ""
        request = InterventionRequest(
            step_id=step.id, label=f"{step.index}{purpose}", plugin=outcome.used_plugin,
            error=error, error_type=error_type, hint=hint, attempts=tuple(history),
            output_schema=step.invoker.output_schema, timeout_s=timeout,
            default=asked.default or "fail", asked_at=asked.ts, seq=asked.seq)
        resolution = await self.intervener.resolve(request)
        if resolution.action != "wait":
            outputs = self.redactor.data(resolution.outputs) if resolution.outputs else None
            answered = InterventionResolved(
                run_id=self.run_id, step_id=step.id, action=resolution.action,
                outputs=outputs, by=resolution.by, plugin=outcome.used_plugin,
                comment=self.redactor.text(resolution.comment))
            if resolution.at is not None:
                answered.ts = resolution.at  # as the store recorded it, and answered
            self.bus.emit(answered)
        return resolution

    def _breaker_event(self, change: Change | None) -> None:
        if change is not None:
            plugin, state, failures = change
            self.bus.emit(BreakerChanged(run_id=self.run_id, plugin=plugin, state=state,
                                         failures=failures))

    # -- one attempt -------------------------------------------------------------------
    async def attempt(self, step: PlannedStep, invoker: Invoker, inputs: dict[str, Any],
                      attempt: int, plugin_attempt: int = 1
                      ) -> tuple[dict[str, Any], tuple[CheckResult, ...]]:
        """One call plus the step's checks; raises AttemptError after emitting AttemptFailed.
        ``attempt`` counts the step's attempts, ``plugin_attempt`` those of ``invoker``."""
        run_id, step_id = self.run_id, step.id
        # Positional, like StepStarted: this runs for every step.
        self.bus.emit(AttemptStarted(run_id, step_id, invoker.name, attempt, invoker.transport))
        started = time.monotonic()
        timeout = step.timeout
        ctx = InvocationContext(
            run_id=run_id, step_id=step_id, attempt=attempt, plugin_attempt=plugin_attempt,
            deadline=started + timeout if timeout is not None else None,
            on_progress=partial(self._progress, step_id),
            logger=RedactingLogger(step_id, self.redactor) if self.redactor else None,
            workdir=self.workdir,
        )
        try:
            try:
                if timeout is None:
                    outputs = await invoker.invoke(inputs, ctx)
                else:
                    async with asyncio.timeout(timeout):
                        outputs = await invoker.invoke(inputs, ctx)
            except BaseException as exc:
                failure = _failure(exc, ctx, timeout)
                if failure is exc:
                    raise
                raise failure from None
            validation = await self._validate(step, outputs, ctx) if step.checks else ()
            return outputs, validation
        except AttemptError as failure:
            duration = time.monotonic() - started
            failure.message = self.redactor.text(failure.message)
            manual_hint = step.step.manual.hint if step.step.manual is not None else None
            hint = choose_hint(failure.hint, manual_hint, self.hints, failure.error_type,
                               failure.message)
            failure.hint = self.redactor.text(hint) if hint else hint
            if failure.traceback is not None:
                failure.traceback = self.redactor.text(failure.traceback)
            failure.summary = AttemptSummary(
                invoker.name, attempt, failure.error_type, failure.message, duration)
            self.bus.emit(AttemptFailed(
                run_id=run_id, step_id=step_id, plugin=invoker.name, attempt=attempt,
                error_type=failure.error_type, error_kind=failure.kind,  # type: ignore[arg-type]
                message=failure.message, hint=failure.hint, duration_s=duration,
                traceback=failure.traceback))
            raise

    async def _validate(self, step: PlannedStep, outputs: dict[str, Any],
                        ctx: InvocationContext) -> tuple[CheckResult, ...]:
        """The step's checks on ``outputs``; an AttemptError when any fails. They run within
        the step's timeout too (a command check still running then is killed)."""
        self.outputs[step.id] = outputs  # checks may reference the step's own outputs
        scope = Scope(self.outputs, self.env)
        try:
            async with asyncio.timeout_at(ctx.deadline):
                validation = await run_checks(step.checks, scope, outputs, self.env,
                                              self.redactor, ctx.deadline, self.workdir)
        except TimeoutError:
            raise AttemptError("timeout", "TimeoutError", f"timed out after "
                               f"{step.timeout:g}s, in its validation", None) from None
        finally:
            del self.outputs[step.id]
        failed = [r for r in validation if not r.passed]
        if failed:
            text = "; ".join(f"{r.kind}: {r.message}" for r in failed)
            raise AttemptError("validation", "ValidationFailed", f"validation failed: {text}",
                               None, validation)
        return validation

    def _progress(self, step_id: str, fraction: float, message: str) -> None:
        """``ctx.progress`` of a plugin: sync plugins call it from their worker thread."""
        if math.isnan(fraction):  # says nothing of how far it is (and is no JSON)
            return
        event = StepProgress(run_id=self.run_id, step_id=step_id, fraction=fraction,
                             message=self.redactor.text(message))
        if threading.get_ident() == self._loop_thread:
            self.bus.emit(event)
        else:
            self._loop.call_soon_threadsafe(self.bus.emit, event)
