"""The state store's part in a ``flowhost run`` or ``flowhost resume`` process.

It records the run (its spec, ``--set`` overrides and working directory, so ``resume`` can
check it again), subscribes the checkpoint listener, offers the cache and the estimate, and
at the end tells the user how to go on: the resume command after Ctrl-C or a failed
checkpoint, the pending decisions of a waiting run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from flowhost.events import Event, EventBus, InterventionRequested
from flowhost.plan import Plan
from flowhost.problems import UserInputError
from flowhost.redact import Redactor
from flowhost.result import RunResult
from flowhost.spec import LoadedSpec
from flowhost.store import (
    RunRecord,
    Store,
    StoreCache,
    StoreListener,
    estimate,
    read,
    state_dir_from,
)

if TYPE_CHECKING:
    from flowhost.engine import Engine


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
            text = text.replace(value, "${secret." + name + "}")
        hidden.append(text)
    return hidden


def state_flag(args: argparse.Namespace) -> str:
    """`` --state-dir D`` for the commands we print, when the user chose one."""
    chosen = getattr(args, "state_dir", None)
    return f" --state-dir {shlex.quote(chosen)}" if chosen else ""


class Durable:
    """A run's store, listener and cache, for one process."""

    def __init__(self, store: Store, record: RunRecord, *, plan: Plan, use_cache: bool,
                 env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        secrets = list(secret_values(plan, env).values())
        self.store = store
        self.record = record
        self.redactor = Redactor(secrets)
        self.cache = StoreCache(store, secrets) if use_cache else None
        self.listener = StoreListener(store, record, cache=self.cache, secrets=secrets)
        self._closed = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @classmethod
    def begin(cls, args: argparse.Namespace, spec: LoadedSpec, plan: Plan,
              run_id: str) -> Durable:
        """Open the state dir and record a new run (exit 2 if the state dir is unusable)."""
        try:  # the text as it was checked moments ago, kept with the run for resume
            text = Path(spec.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserInputError(f"{spec.file}: cannot read the spec again: {exc}") from None
        store = Store.open(state_dir_from(args.state_dir))
        secrets = secret_values(plan, os.environ)
        redacted = Redactor(secrets.values()).text(text) if secrets else text
        record = store.create_run(
            run_id=run_id, workflow_id=plan.workflow.workflow_id, spec_text=redacted,
            spec_path=str(Path(spec.file).absolute()), spec_redacted=redacted != text,
            overrides=hide_secrets(args.overrides, secrets), cwd=os.getcwd(),
            total_steps=len(plan.steps))
        store.locks.acquire(record.run_no)
        return cls(store, record, plan=plan, use_cache=not args.no_cache)

    def subscribe(self, bus: EventBus) -> None:
        """Subscribe first: a step shown as finished is already durable."""
        bus.subscribe(self.listener)

    def watch(self, engine: Engine) -> None:
        """A checkpoint that cannot be written stops the run: nothing depends on it."""
        self.listener.on_failure = engine.cancel

    def estimate(self, plan: Plan, max_parallel: int, done: Collection[str] = ()) -> float | None:
        plugins = {planned.invoker.name for planned in plan.steps.values()}
        return estimate(plan, self.store.durations(plugins), max_parallel=max_parallel,
                        done=done)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.listener.close()
            self.store.locks.release(self.record.run_no)
            self.store.close()

    def conclude(self, args: argparse.Namespace, status: str, result: RunResult,
                 events: list[Event]) -> str:
        """Tell the user how to go on; the run's final status (a failed checkpoint fails it)."""
        self.close()
        run_id, flag = self.run_id, state_flag(args)
        failure = self.listener.failure
        if failure is not None:
            result.status, result.learnings.success = "failed", False
            print(f"flowhost: {failure}.\nThe steps finished before are saved: once that is "
                  f"fixed, continue with: flowhost resume {run_id}{flag}", file=sys.stderr)
            return "failed"
        if status == "cancelled":
            print(f"Interrupted: running steps were cancelled and checkpointed. Continue "
                  f"with: flowhost resume {run_id}{flag}", file=sys.stderr)
        elif status == "waiting":
            print(self.redactor.text(pending_decisions(run_id, read(events).waiting, flag)))
        return status


def pending_decisions(run_id: str, waiting: Mapping[str, InterventionRequested],
                      flag: str = "") -> str:
    lines = []
    for step_id, request in waiting.items():
        lines += [
            f"⏸  Run {run_id} is waiting for a decision on step '{step_id}' "
            f"({request.plugin}):",
            f"   {request.error_type}: {request.error}",
        ]
        if request.hint:
            lines.append(f"   Hint: {request.hint}")
        base = f"flowhost runs resolve {run_id} {shlex.quote(step_id)}{flag}"
        lines += [
            "   Answer with one of:",
            f"     {base} --action retry",
            f"     {base} --action skip [--outputs JSON]   "
            "(JSON: outputs that stand in for the step's)",
            f"     {base} --action abort",
        ]
    lines.append(f"   then continue with: flowhost resume {run_id}{flag}")
    return "\n".join(lines)
