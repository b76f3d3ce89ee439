"""``flowhost.Run``: a run going on in this process, as a program holds it.

    run = await flowhost.start_run("wf.yaml", workdir="/srv/builds/42")
    async for event in run.events():      # every event from the start, then live
        ...
    result = await run.result()           # a flowhost.RunResult
    run.cancel()                          # final: status "cancelled"
    await run.resolve("cache", "skip")    # answer a question (on_manual="ask")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from flowhost.events import Decision, Event, InterventionRequested, RunFinished, StepFinished
from flowhost.execution import Execution, Outcome
from flowhost.intervene import InterventionRequest, QueuedIntervener, Resolution, outputs_problem
from flowhost.problems import UserInputError
from flowhost.result import RunResult, run_time


class Run:
    """Started by ``flowhost.start_run`` or ``flowhost.resume_run``; one per run and
    process. A resumed run that had nothing left to execute (it stays waiting, or a
    decision aborted it) is a ``Run`` that is already done."""

    def __init__(self, run_id: str, workflow_id: str, *, execution: Execution | None = None,
                 done: Outcome | None = None, note: str | None = None) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.note = note  # what a resume did before running, for people
        self._execution = execution
        self._outcome = done
        self._task: asyncio.Task[Outcome] | None = None
        # queues of ``events()`` iterators; the bus feeds them once the first one follows
        # (most runs have none, and it delivers three events a step)
        self._followers: list[asyncio.Queue[Event | None]] = []
        self._fanning_out = False

    # -- running -----------------------------------------------------------------------
    def observe(self, observer: Callable[[Event], None]) -> None:
        """Let ``observer`` see each event as it is committed (before ``start``, to see
        them all). One that raises is reported and detached: it never stops the run."""
        if self._execution is not None:
            self._execution.observe(observer)

    @property
    def carried(self) -> list[str]:
        """The statuses of the steps earlier processes of this run finished."""
        if self._execution is None:
            return []
        return [f.status for f in self._execution.earlier.restored.values()]

    @property
    def earlier_s(self) -> float:
        """The time earlier processes of this run took (0.0 for a new run): with this
        process's, it makes the result's ``execution_time_s``."""
        if self._execution is None or not self._execution.earlier.events:
            return 0.0
        return run_time(self._execution.earlier.events)

    @property
    def carried_steps(self) -> list[StepFinished]:
        """How the steps earlier processes of this run finished (and decisions applied)."""
        if self._execution is None:
            return []
        return list(self._execution.earlier.restored.values())

    def start(self) -> None:
        """Begin executing, as a task of the running event loop (idempotent)."""
        if self._task is None and self._execution is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._execution.run(), name=f"run:{self.run_id}")

    async def outcome(self) -> Outcome:
        """The run's status, result and whether its checkpoint failed, once it ends."""
        if self._outcome is None:
            self.start()
            assert self._task is not None
            self._outcome = await asyncio.shield(self._task)
        return self._outcome

    async def result(self) -> RunResult:
        return (await self.outcome()).result

    @property
    def done(self) -> bool:
        return self._outcome is not None or (self._task is not None and self._task.done())

    @property
    def executing(self) -> frozenset[str]:
        """The steps executing now (calling their plugins, or waiting for an answer)."""
        if self._execution is None or self.done:
            return frozenset()
        return self._execution.engine.running

    @property
    def estimate_s(self) -> float | None:
        """How long the run should take, from its plugins' past durations (None: unknown)."""
        return self._execution.estimate() if self._execution is not None else None

    def cancel(self, reason: str = "cancelled through the API") -> None:
        """Stop it for good: running steps are cancelled, status ``cancelled``."""
        if self._execution is not None:
            self._execution.engine.cancel(reason, final=True)

    def interrupt(self, reason: str = "cancelled by the user") -> None:
        """Stop it so that ``resume`` continues it (Ctrl-C, a shutdown): ``interrupted``."""
        if self._execution is not None:
            self._execution.engine.cancel(reason, final=False)

    async def drain(self, timeout: float, reason: str = "draining") -> Outcome:
        """Start no more steps and let the running ones finish within ``timeout`` seconds;
        then stop what still runs. Whatever is left is checkpointed as ``interrupted``, for
        ``resume`` (or a restarted daemon) to run."""
        if self._execution is not None:
            self._execution.engine.drain(reason)
        try:
            return await asyncio.wait_for(asyncio.shield(self.outcome()), timeout)
        except TimeoutError:
            self.interrupt(f"{reason}: stopped after {timeout:g}s")
            return await self.outcome()

    # -- events ------------------------------------------------------------------------
    def _fan_out(self, event: Event) -> None:
        for queue in self._followers:
            queue.put_nowait(event)
        if isinstance(event, RunFinished):
            for queue in self._followers:
                queue.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        """Every event of this process's part of the run, from its start, then live; ends
        after ``RunFinished``."""
        execution = self._execution
        if execution is None:
            return
        history = execution.bus.history
        assert history is not None
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        # (no await between the two: every event is either in the copy or, later, queued)
        seen = list(history)
        self._followers.append(queue)
        if not self._fanning_out:
            self._fanning_out = True
            execution.bus.subscribe(self._fan_out)
        try:
            for event in seen:
                yield event
                if isinstance(event, RunFinished):
                    return
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._followers.remove(queue)

    @property
    def waiting(self) -> dict[str, InterventionRequested]:
        """The questions a run that stopped to wait left open, by step id."""
        if self._outcome is None:
            return {}
        from flowhost.store import read

        return read(self._outcome.events).waiting

    @property
    def masker(self) -> Callable[[str], str] | None:
        """What masks the run's secret values in a text; None when it has none."""
        if self._execution is None or not self._execution.engine.redactor:
            return None
        return self._execution.engine.redactor.text

    def redact(self, text: str) -> str:
        """``text`` with the run's secret values masked."""
        if self._execution is None:
            return text
        return self._execution.engine.redactor.text(text)

    # -- people ------------------------------------------------------------------------
    @property
    def pending(self) -> dict[str, InterventionRequest]:
        """Open questions (``on_manual="ask"``), by step id."""
        intervener = self._intervener()
        return dict(intervener.pending) if intervener is not None else {}

    async def resolve(self, step_id: str, action: Decision, *,
                      outputs: dict[str, Any] | None = None, by: str = "api") -> None:
        """Answer the open question of ``step_id``: retry, skip (with ``outputs`` standing
        in for the step's, checked against its plugin's output schema) or abort."""
        intervener = self._intervener()
        request = intervener.pending.get(step_id) if intervener is not None else None
        if intervener is None or request is None:
            raise UserInputError(f"step '{step_id}' of run {self.run_id} is not waiting for "
                                 "a decision")
        if outputs is not None:
            if action != "skip":
                raise UserInputError("outputs go with skip only")
            problem = outputs_problem(outputs, request.output_schema)
            if problem is not None:
                raise UserInputError(f"the outputs do not fit {request.plugin}'s output "
                                     f"schema: {problem}")
        intervener.answer(step_id, Resolution(action, outputs=outputs, by=by))

    def _intervener(self) -> QueuedIntervener | None:
        if self._execution is None:
            return None
        chosen = self._execution.engine.intervener
        return chosen if isinstance(chosen, QueuedIntervener) else None
