"""One process's part of a run: its record in the state store, the checkpoint listener, the
cache, the engine, and the result folded from every event the run has (also those earlier
processes wrote, for a resumed run).

The checkpoint is the run's dependency: it is subscribed first, and a checkpoint that cannot
be written interrupts the run (the steps finished before stay saved). Observers come after
it, each guarded (``flowhost.observers``): none of them can stop the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

from flowhost.context import RunContext
from flowhost.engine import Engine
from flowhost.events import Event, EventBus, RunStatus
from flowhost.intervene import Intervener
from flowhost.observers import Guarded, Observer
from flowhost.plan import Plan
from flowhost.redact import Redactor
from flowhost.result import RunResult, fold
from flowhost.run_state import Earlier
from flowhost.store import RunRecord, estimate
from flowhost.store.estimate import agree, inputs_key
from flowhost.store.interface import Lease, StateStore


def secret_values(plan: Plan, env: Mapping[str, str]) -> dict[str, str]:
    """Name -> value of the secrets the plan references and the environment sets."""
    return {name: env[name] for name in sorted(plan.secret_names) if env.get(name)}


def hide_secrets(overrides: Iterable[str], secrets: Mapping[str, str]) -> list[str]:
    """``--set`` values with each secret value replaced by its reference, which resolves to
    the same value on resume: the store never sees the secret, and resume still works."""
    hidden = []
    by_length = sorted(secrets.items(), key=lambda item: len(item[1]), reverse=True)
    for override in overrides:
        text = override
        for name, value in by_length:
            # also as JSON writes it inside a string: the API's mapping of overrides gives
            # each value as JSON, where a quote, a backslash or a non-ASCII letter is escaped
            for form in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                         value):
                text = text.replace(form, "${secret." + name + "}")
        hidden.append(text)
    return hidden


def record_run(store: StateStore, ctx: RunContext, plan: Plan, spec_text: str, spec_path: str,
               run_id: str, overrides: Sequence[str]) -> RunRecord:
    """Record a new run: its spec as checked (secret values masked), its ``--set``
    overrides (secrets as references) and working directory, for ``resume``."""
    secrets = secret_values(plan, ctx.env)
    redacted = Redactor(secrets.values()).text(spec_text) if secrets else spec_text
    return store.create_run(
        run_id=run_id, workflow_id=plan.workflow.workflow_id, spec_text=redacted,
        spec_path=spec_path, spec_redacted=redacted != spec_text,
        overrides=hide_secrets(overrides, secrets), cwd=str(ctx.workdir),
        total_steps=len(plan.steps))


class Outcome:
    """How a process's part of a run ended. ``result`` may be given as the function that
    folds it: it is worked out when first asked for, since most callers (``flowhost run``
    without ``--json-out``, the daemon's workers) need only the status, and folding costs a
    few microseconds per step."""

    __slots__ = ("_result", "checkpoint_failure", "events", "status")

    def __init__(self, status: RunStatus, result: RunResult | Callable[[], RunResult],
                 checkpoint_failure: str | None, events: Sequence[Event] = ()) -> None:
        self.status = status
        self._result = result
        self.checkpoint_failure = checkpoint_failure  # why the checkpoint stopped the run
        self.events = events  # every event of the run, earlier processes' too

    @property
    def result(self) -> RunResult:
        result = self._result
        if not isinstance(result, RunResult):
            result = self._result = result()
        return result


class Execution:
    def __init__(self, ctx: RunContext, plan: Plan, store: StateStore, record: RunRecord,
                 lease: Lease, *, intervener: Intervener, max_parallel: int = 8,
                 use_cache: bool = True, report: Callable[[str], None] = print,
                 earlier: Earlier | None = None) -> None:
        secrets = [*secret_values(plan, ctx.env).values(), *plan.masked]
        self.ctx, self.plan, self.store, self.record = ctx, plan, store, record
        self.lease = lease
        self.earlier = earlier or Earlier()
        self.cache = store.step_cache(secrets) if use_cache else None
        self.listener = store.writer(record, cache=self.cache, secrets=secrets,
                                     inputs_key=self._inputs_key)
        self.bus = EventBus()
        self.bus.subscribe(self.listener)  # first: an event observed is an event committed
        self._report = report
        self.engine = Engine(plan, self.bus, run_id=record.run_id, env=ctx.env,
                             workdir=str(ctx.workdir), max_parallel=max_parallel,
                             cache=self.cache, intervener=intervener, earlier=self.earlier)
        self.listener.on_failure = self._checkpoint_failed
        self._closed = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def observe(self, observer: Observer) -> Guarded:
        """Let ``observer`` see every event from now on; if it raises, it is detached."""
        guard = Guarded(observer, self._report)
        self.bus.subscribe(guard)
        return guard

    def estimate(self) -> float | None:
        plugins = {planned.invoker.name for planned in self.plan.steps.values()}
        durations = self.store.durations(plugins)
        # The steps of plugins whose durations vary: the same inputs' durations are needed
        varied = {plugin for plugin, values in durations.items() if not agree(values)}
        keys = {planned.id: (planned.invoker.name, inputs_key(planned))
                for planned in self.plan.steps.values()
                if planned.invoker.name in varied and planned.id not in self.earlier.restored}
        found = self.store.similar_durations(keys.values()) if keys else {}
        similar = {step_id: found[key] for step_id, key in keys.items() if key in found}
        return estimate(self.plan, durations, max_parallel=self.engine.max_parallel,
                        done=self.earlier.restored, similar=similar)

    def _inputs_key(self, step_id: str) -> str | None:
        planned = self.plan.steps.get(step_id)
        return inputs_key(planned) if planned is not None else None

    def _checkpoint_failed(self, message: str) -> None:
        self.engine.cancel(message, final=False)

    async def run(self) -> Outcome:
        try:
            status = await self.engine.run()
            assert self.bus.history is not None
            events: list[Event] = [*self.earlier.events, *self.bus.history]
            failure = self.listener.failure
            if failure is not None:
                # The run is what was committed (what `runs show` tells), not what this
                # process went on to do after its checkpoint failed.
                events = self._committed(events)
        finally:
            self.close()
        pattern = self.plan.workflow.pattern

        def result() -> RunResult:
            folded = fold(events, pattern=pattern)
            if failure is not None:
                folded.status, folded.interrupted = "interrupted", True
                folded.learnings.success = False
            return folded

        if failure is not None:
            status = "interrupted"
        return Outcome(status, result, failure, events)

    def _committed(self, fallback: list[Event]) -> list[Event]:
        try:
            return self.store.events(self.record)
        except Exception:  # the store cannot even be read: what this process saw
            return fallback

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.listener.close()
            self.store.release(self.lease)
            self.store.close()
