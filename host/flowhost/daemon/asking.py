"""Level 3 in a worker: a question waits for its answer while the run's other branches go
on, and parks once nothing else of the run executes (the run ends ``waiting``, and its
worker takes another run).

The answer is the one the state store records for the question (``Store.answers``): a
person's through ``ResolveIntervention``, which the daemon records and then tells this
worker about (``poke``), or the step's ``manual.default`` once its ``manual.timeout`` is
up, recorded here the same atomic way, so exactly one of them counts. The worker looks in
the store now and then too, in case a word from the daemon went missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from flowhost.events import Event, InterventionResolved, StepFinished
from flowhost.handle import Run
from flowhost.intervene import BY_TIMEOUT, InterventionRequest, Resolution
from flowhost.store import RunRecord
from flowhost.store.interface import StateStore

LOOK_EVERY_S = 1.0


class Asking:
    def __init__(self, store: StateStore, record: RunRecord) -> None:
        self.store, self.record = store, record
        self.open: dict[str, tuple[InterventionRequest, asyncio.Future[Resolution]]] = {}
        self.parking = False  # draining: every question parks at once
        self._executing: Callable[[], frozenset[str]] = frozenset
        self._poked = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def watch(self, run: Run) -> None:
        """Follow ``run``: its steps ending may leave only questions executing."""
        self._executing = lambda: run.executing
        run.observe(self._on_event)

    async def resolve(self, request: InterventionRequest) -> Resolution:
        if self.parking:
            return Resolution("wait")
        answer: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self.open[request.step_id] = (request, answer)
        self.poke()  # an answer may be there already, or nothing else runs
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())
        try:
            return await answer
        finally:
            self.open.pop(request.step_id, None)

    def poke(self) -> None:
        """Look now: the daemon recorded an answer (or a step ended)."""
        self._poked.set()

    def park_all(self) -> None:
        """The worker drains: the questions stay open, for when the run is taken up again."""
        self.parking = True
        self._park(set(self.open))

    def _on_event(self, event: Event) -> None:
        if self.open and isinstance(event, StepFinished):
            # looked at once the engine's bookkeeping of the step is done
            asyncio.get_running_loop().call_soon(self.poke)

    async def _watch(self) -> None:
        while self.open:
            self._look()
            if not self.open:
                return
            self._poked.clear()
            deadlines = [d for request, _ in self.open.values()
                         if (d := request.deadline) is not None]
            wait = min([LOOK_EVERY_S, *(d - time.time() for d in deadlines)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), max(wait, 0.0))

    def _look(self) -> None:
        answers = self.store.answers(self.record)
        now = time.time()
        for step_id, (request, answer) in list(self.open.items()):
            if answer.done():
                continue
            found = answers.get(request.seq)
            deadline = request.deadline
            if found is None and deadline is not None and deadline <= now:
                timeout = InterventionResolved(
                    run_id=self.record.run_id, step_id=step_id, action=request.default,
                    by=BY_TIMEOUT, plugin=request.plugin, ts=deadline)
                # not logged here: the ladder logs the answer it gets, as any other
                found, _ = self.store.append_decision(self.record, timeout,
                                                      request_seq=request.seq, log=False)
            if found is not None:
                answer.set_result(Resolution(found.action, outputs=found.outputs,
                                             by=found.by, comment=found.comment,
                                             at=found.ts))
        executing = self._executing()
        if executing and executing <= set(self.open):
            self._park(set(self.open))  # nothing but questions: the run stops to wait

    def _park(self, step_ids: set[str]) -> None:
        for step_id in step_ids:
            _, answer = self.open[step_id]
            if not answer.done():
                answer.set_result(Resolution("wait"))
