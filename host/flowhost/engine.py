"""The asyncio DAG scheduler: a step starts as soon as every step it depends on finished.

The engine decides what runs when and emits events; the ladder (``flowhost.ladder``)
decides what happens inside one step's call. Listeners (progress, result, and later the
store and metrics) only ever see events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from flowhost.breaker import Breakers
from flowhost.events import (
    AttemptFailed,
    CacheHit,
    CacheMiss,
    CacheRejected,
    CheckResult,
    EventBus,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
)
from flowhost.final_validation import final_validation
from flowhost.intervene import Intervener
from flowhost.ladder import Ladder, run_checks
from flowhost.outcome import CallOutcome, finished_event
from flowhost.plan import Plan, PlannedStep
from flowhost.redact import Redactor
from flowhost.refs import ResolveError, Scope
from flowhost.run_state import Earlier, Stop


def _passes(finished: StepFinished) -> bool:
    """Whether dependents may go on: it succeeded, or a skip gave outputs to stand in."""
    return finished.status == "success" or (
        finished.status == "skipped" and finished.outputs is not None)


def _internal(exc: BaseException) -> str:
    return (f"internal error in flowhost: {type(exc).__name__}: {exc} (please report it; "
            "FLOWHOST_DEBUG=1 shows the traceback)")


def new_run_id() -> str:
    """Sortable by start time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class StepCache(Protocol):
    """Outputs of earlier calls of idempotent steps, by plugin, version and inputs."""

    def lookup(self, step: PlannedStep, inputs: dict[str, Any]) -> dict[str, Any] | None: ...

    def store(self, step: PlannedStep, inputs: dict[str, Any],
              outputs: dict[str, Any]) -> None: ...


class Engine:
    """Runs a plan; ``earlier`` is what earlier processes of a resumed run left."""

    def __init__(
        self,
        plan: Plan,
        bus: EventBus,
        *,
        run_id: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        max_parallel: int = 8,
        cache: StepCache | None = None,
        intervener: Intervener | None = None,
        earlier: Earlier | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.plan = plan
        self.bus = bus
        self.run_id = run_id or new_run_id()
        self.env = dict(env or {})  # what ${env.X} may read: the run's, never the process's
        self.workdir = workdir  # None: the process's (tests); a run of the API has its own
        self.max_parallel = max_parallel
        self.redactor: Redactor = plan.redactor(self.env)
        self.cache = cache
        self.intervener = intervener
        self.breakers = Breakers(plan.workflow.breaker, clock)
        self.outputs: dict[str, Any] = {}  # step id -> outputs, of the steps that passed
        self.status: dict[str, str] = {}  # step id -> how it ended
        self.parked: set[str] = set()  # steps whose decision is left to someone later
        self._earlier = earlier or Earlier()
        # each step's failed attempts in earlier processes: its attempts are numbered on
        self._tried = Counter(e.step_id for e in self._earlier.events
                              if type(e) is AttemptFailed)
        self._sleep = sleep
        self._unmet = {sid: len(ps.deps) for sid, ps in plan.steps.items()}  # deps not done
        self._ready: deque[str] = deque()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._unfinished = self._total = len(plan.steps)
        self._all_done: asyncio.Event | None = None
        self._final: asyncio.Task[bool] | None = None  # the final validation, while it runs
        self._stop = Stop()
        self._ladder: Ladder | None = None
        self._scope = Scope(self.outputs, self.env)

    # -- public ------------------------------------------------------------------------
    async def run(self) -> RunStatus:
        started = time.monotonic()
        workflow = self.plan.workflow
        self.bus.emit(RunStarted(
            run_id=self.run_id, workflow_id=workflow.workflow_id,
            description=workflow.description, total_steps=self._total,
            steps=tuple((ps.id, ps.step.plugin, ps.step.purpose)
                        for ps in self.plan.steps.values()),
            resumed=bool(self._earlier.events or self._earlier.restored
                         or self._earlier.rerun)))
        self._restore()
        self._all_done = asyncio.Event()
        self._ladder = Ladder(run_id=self.run_id, bus=self.bus, env=self.env,
                              redactor=self.redactor, outputs=self.outputs,
                              breakers=self.breakers, intervener=self.intervener,
                              sleep=self._sleep, workdir=self.workdir)
        self._launch()
        if self._unfinished:
            await self._all_done.wait()
        status = await self._final_status()
        self.bus.emit(RunFinished(run_id=self.run_id, status=status,
                                  duration_s=time.monotonic() - started,
                                  message=self._stop.crash or self._stop.reason or "",
                                  workflow_id=workflow.workflow_id))
        return status

    def _restore(self) -> None:
        """Take over what an interrupted run finished; find the steps ready to start."""
        steps, restored = self.plan.steps, self._earlier.restored
        for step_id, finished in restored.items():
            if step_id not in steps or step_id in self.status:
                continue
            self.status[step_id] = finished.status
            self._unfinished -= 1
            if _passes(finished):
                self.outputs[step_id] = finished.outputs or {}
            for dependent in steps[step_id].dependents:
                self._unmet[dependent] -= 1
        for step_id, finished in restored.items():
            # A crash can land between a failure and the skips it implies: redo those.
            if step_id in steps and not _passes(finished):
                for dependent in steps[step_id].dependents:
                    self._skip(steps[dependent], f"step '{step_id}' {finished.status}"
                               if finished.status != "failed" else f"step '{step_id}' failed")
        self._ready.extend(sid for sid, unmet in self._unmet.items()
                           if unmet == 0 and sid not in self.status)

    @property
    def running(self) -> frozenset[str]:
        """The steps executing now: calling their plugins, or waiting for an answer."""
        return frozenset(self._running)

    def cancel(self, reason: str = "cancelled", *, final: bool = True) -> None:
        """Stop the run: running steps are cancelled, nothing new starts. ``final``: a
        person or a program cancelled it (status ``cancelled``, never resumed by itself);
        otherwise it is ``interrupted`` (Ctrl-C, SIGTERM, a failed checkpoint) and
        ``resume`` continues it."""
        if self._stop.reason is None:
            self._stop.reason, self._stop.final = reason, final
        self._ready.clear()
        for task in list(self._running.values()):
            task.cancel()
        if self._final is not None:
            self._final.cancel()
        self._check_done()

    def drain(self, reason: str = "draining") -> None:
        """Start no more steps; the running ones finish. The run ends ``interrupted`` when
        steps were left (``resume`` runs them), or as usual when none were."""
        if not self._stop.halted:
            self._stop.draining = reason
            self._ready.clear()
            self._check_done()

    # -- scheduling --------------------------------------------------------------------
    def _launch(self) -> None:
        ready, running, steps = self._ready, self._running, self.plan.steps
        if self._stop.halted:
            ready.clear()  # stopped, or draining: nothing new starts
        while ready and len(running) < self.max_parallel:
            step_id = ready.popleft()
            task = asyncio.create_task(self._drive(steps[step_id]), name=f"step:{step_id}")
            task.add_done_callback(self._task_done)
            running[step_id] = task
        self._check_done()

    async def _drive(self, step: PlannedStep) -> None:
        """Run ``step``, then keep this task's slot busy with the next ready step.

        Reusing the task instead of creating one per step keeps a long chain as cheap as a
        plain loop of awaits (and so does awaiting the call right here, between the sync
        bookkeeping of ``_begin`` and ``_conclude``).
        """
        task = self._running[step.id]
        while True:
            started = time.monotonic()
            prepared = self._begin(step)
            if isinstance(prepared, CallOutcome):
                outcome = prepared
            else:
                try:
                    if self.cache is not None and step.cache:
                        outcome = await self._call_cached(step, prepared)
                    else:
                        outcome = await self._ladder.run(  # type: ignore[union-attr]
                            step, prepared, self._tried[step.id] if self._tried else 0)
                except asyncio.CancelledError:
                    outcome = CallOutcome("cancelled", step.step.plugin, 0)
                except Exception as exc:  # a bug of ours: it fails the step, named
                    outcome = CallOutcome("failed", step.step.plugin, 0,
                                          error=self.redactor.text(_internal(exc)),
                                          error_type="InternalError")
            self._conclude(step, outcome, started)
            if self._stop.halted or not self._ready:
                self._check_done()
                return
            step = self.plan.steps[self._ready.popleft()]
            self._running[step.id] = task
            if self._ready:
                self._launch()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before its coroutine began never ran its own bookkeeping."""
        orphans = [sid for sid, t in self._running.items() if t is task]
        crash = None if task.cancelled() else task.exception()
        stop = self._stop
        if crash is not None and stop.crash is None:
            # The bookkeeping itself failed: the run must not end as if all went well.
            stop.crash = self.redactor.text(_internal(crash))
        for step_id in orphans:
            del self._running[step_id]
            if crash is not None:
                self._fail_orphan(self.plan.steps[step_id], stop.crash or "")
            elif stop.reason is None:
                reason = stop.abort_reason() if stop.aborted_at is not None else "run stopped"
                self._skip(self.plan.steps[step_id], reason)
        if orphans or crash is not None:
            self._check_done()

    def _fail_orphan(self, step: PlannedStep, error: str) -> None:
        """Record as failed a step whose task died of an error of flowhost's own."""
        if step.id in self.status:
            return
        finished = StepFinished(run_id=self.run_id, step_id=step.id, plugin=step.step.plugin,
                                used_plugin=step.step.plugin, status="failed", attempts=0,
                                duration_s=0.0, error=error, error_type="InternalError")
        try:
            self.bus.emit(finished)
        finally:
            self._settle(step, finished)

    def _check_done(self) -> None:
        if self._all_done is not None and not self._running and (
                not self._ready or self._stop.halted):
            self._all_done.set()

    def _settle(self, step: PlannedStep, finished: StepFinished) -> None:
        """The step is done: its dependents get one dependency fewer, or are skipped."""
        status = finished.status
        self.status[step.id] = status
        self._unfinished -= 1
        passes = status == "success" or (status == "skipped" and finished.outputs is not None)
        for dependent in step.dependents:
            self._unmet[dependent] -= 1
            if passes:
                # (a dependent may have finished already: a resumed run reruns a step)
                if (self._unmet[dependent] == 0 and self._stop.aborted_at is None
                        and dependent not in self.status):
                    self._ready.append(dependent)
            elif dependent not in self.status:
                verb = "failed" if status == "failed" else f"was {status}"
                self._skip(self.plan.steps[dependent], f"step '{step.id}' {verb}")

    def _skip(self, step: PlannedStep, reason: str) -> None:
        if step.id in self.status or self._stop.reason is not None:
            return
        finished = StepFinished(run_id=self.run_id, step_id=step.id, plugin=step.step.plugin,
                                used_plugin=step.step.plugin, status="skipped", attempts=0,
                                duration_s=0.0, reason=reason)
        self.bus.emit(finished)
        self._settle(step, finished)

    def _abort(self, failed: PlannedStep, *, by_person: bool = False) -> None:
        self._stop.aborted_at, self._stop.by_person = failed.id, by_person
        self._ready.clear()
        reason = self._stop.abort_reason()
        for step in self.plan.steps.values():
            if step.id not in self.status and step.id not in self._running:
                self._skip(step, reason)
        for task_id, task in list(self._running.items()):
            if task_id != failed.id:
                task.cancel(reason)

    # -- one step ----------------------------------------------------------------------
    def _begin(self, step: PlannedStep) -> dict[str, Any] | CallOutcome:
        """Announce the step and resolve its inputs (or say why they cannot be)."""
        plugin = step.step.plugin
        # Positional, like StepFinished below: this runs for every step.
        self.bus.emit(StepStarted(self.run_id, step.id, plugin, step.step.purpose, step.index,
                                  self._total, step.id in self._earlier.rerun))
        try:
            inputs: dict[str, Any] = step.inputs.resolve(self._scope)  # type: ignore[assignment]
        except ResolveError as exc:
            return CallOutcome("failed", plugin, 0, error=self.redactor.text(str(exc)),
                               error_type="ResolveError")
        return inputs

    def _conclude(self, step: PlannedStep, outcome: CallOutcome, started: float) -> None:
        """Record how the step ended, and what that means for the rest of the run."""
        del self._running[step.id]
        ending = outcome.ending
        if ending == "waiting":
            self.parked.add(step.id)  # unfinished: `runs resolve` + `resume` take it on
            return
        if ending in ("success", "skipped") and outcome.outputs is not None:
            self.outputs[step.id] = outcome.outputs  # the real ones, for the dependents
        reason = ""
        if ending == "cancelled":  # (only a cancelled step says why: the others need not)
            reason = self._stop.reason or self._stop.abort_reason()
        finished = finished_event(self.run_id, step.id, step.step.plugin, outcome,
                                  time.monotonic() - started, self.redactor, reason)
        self.bus.emit(finished)
        self._settle(step, finished)
        if ending == "aborted":
            self._abort(step, by_person=True)
        elif finished.status == "failed" and step.step.on_failure == "abort":
            self._abort(step)

    async def _call_cached(self, step: PlannedStep, inputs: dict[str, Any]) -> CallOutcome:
        cache = self.cache if step.cache else None
        if cache is not None:
            hit = cache.lookup(step, inputs)
            plugin = step.invoker.name
            if hit is not None:
                self.bus.emit(CacheHit(run_id=self.run_id, step_id=step.id, plugin=plugin))
                outcome = await self._trust(step, hit)
                if outcome is not None:
                    return outcome
            else:
                self.bus.emit(CacheMiss(run_id=self.run_id, step_id=step.id, plugin=plugin))
        outcome = await self._ladder.run(  # type: ignore[union-attr]
            step, inputs, self._tried[step.id] if self._tried else 0)
        if cache is not None and outcome.ok and outcome.outputs is not None:
            cache.store(step, inputs, outcome.outputs)
        return outcome

    async def _trust(self, step: PlannedStep, outputs: dict[str, Any]) -> CallOutcome | None:
        """A cached result counts only if the step's checks still pass on it (the folder a
        cached ``project_path`` names may have been deleted since)."""
        validation: tuple[CheckResult, ...] = ()
        if step.checks:
            self.outputs[step.id] = outputs
            try:
                validation = await run_checks(step.checks, self._scope, outputs, self.env,
                                              self.redactor, workdir=self.workdir)
            finally:
                del self.outputs[step.id]
            failed = [f"{r.kind}: {r.message}" for r in validation if not r.passed]
            if failed:
                self.bus.emit(CacheRejected(run_id=self.run_id, step_id=step.id,
                                            plugin=step.invoker.name, reason="; ".join(failed)))
                return None
        return CallOutcome("success", step.invoker.name, 0, outputs=outputs,
                           validation=validation, cached=True)

    # -- the end -----------------------------------------------------------------------
    async def _final_status(self) -> RunStatus:
        stop = self._stop
        if stop.crash is not None:
            return "failed"
        if stop.reason is not None:
            return "cancelled" if stop.final else "interrupted"
        if stop.aborted_at is not None:
            return "aborted" if stop.by_person else "failed"
        if self.parked:
            return "waiting"
        if stop.draining is not None and len(self.status) < self._total:
            stop.reason = stop.draining  # RunFinished says why
            return "interrupted"
        if not self.plan.final_checks:
            return "success"
        self._final = asyncio.ensure_future(final_validation(
            self.plan, self.run_id, self.outputs, self.env, self.redactor, self.workdir,
            self.bus.emit))
        try:
            passed = await self._final
        except asyncio.CancelledError:
            if stop.reason is None:
                raise
            # Stopped while the final checks ran (their processes end with them).
            return "cancelled" if stop.final else "interrupted"
        return "success" if passed else "failed"
