"""``flowhost resume [RUN_ID]``: continue an interrupted or waiting run from its checkpoints.

The run's spec is the one stored with it (checked again against the plugins installed now),
its events say what is left: finished steps are taken over and never run again, steps in
flight when it stopped run again (at-least-once), and the decisions given with
``flowhost runs resolve`` are applied: skip (with outputs or not), retry, or abort.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flowhost import api
from flowhost.commands.messages import pending_decisions, state_flag
from flowhost.commands.run import (
    EXIT_CODES,
    _write_json,
    choose_intervener,
    drive,
    json_out_path,
    pause_gc_until_the_run,
    process_metrics,
)
from flowhost.events import (
    AttemptFailed,
    Event,
    InterventionRequested,
    InterventionResolved,
    SpecReloaded,
)
from flowhost.handle import Run
from flowhost.intervene import AttemptSummary, Intervener, InterventionRequest, PolicyIntervener
from flowhost.plan import Plan
from flowhost.result import fold
from flowhost.resumption import edited_spec, load_run_plan
from flowhost.store import Checkpoint, read
from flowhost.threads import run_main

if TYPE_CHECKING:
    from flowhost.metrics.process import Metrics


def resume_command(args: argparse.Namespace) -> int:
    with process_metrics(args) as metrics:  # first: a bad --metrics-listen is exit 2 now
        pause_gc_until_the_run()
        stored = api.take_run(args.run_id, state_dir=args.state_dir,
                              reopen=args.reload_spec)
        try:
            return _resume(args, stored, metrics)
        finally:  # (a no-op when the run went on: it let go of both)
            stored.store.release(stored.lease)
            stored.store.close()


def _resume(args: argparse.Namespace, stored: api.Stored, metrics: Metrics | None) -> int:
    record, flag = stored.record, state_flag(args)
    json_out = json_out_path(args)
    if json_out is not None:
        json_out = json_out.absolute()
    if Path(record.cwd) != Path.cwd() and Path(record.cwd).is_dir():
        print(f"(working directory: {record.cwd}, where the run started)", file=sys.stderr)
    plan = _plan(args, stored)
    record = stored.record
    print(f"run_id: {record.run_id}", flush=True)
    if stored.point.waiting:
        answers = _decide_now(args, plan, stored.point, stored.events)
        if answers is None:
            api.park(stored)
            stored.store.release(stored.lease)
            if json_out is not None:
                _write_json(json_out, fold(stored.events, pattern=plan.workflow.pattern))
            print(pending_decisions(record.run_id, stored.point.waiting, flag))
            return EXIT_CODES["waiting"]
        for asked, answer in answers:
            winner, won = stored.store.append_decision(record, answer, request_seq=asked.seq)
            if not won:  # (recorded for it meanwhile, by one who does not own it)
                stored.store.append(record, [winner])
        stored.events = stored.store.events(record)
        stored.point = read(stored.events)

    async def prepare(intervener: Intervener) -> Run:
        run = await api.prepare_resume(stored=stored, plan=plan, on_manual=intervener,
                                       max_parallel=args.max_parallel,
                                       use_cache=not args.no_cache)
        if run.note and not run.done:
            print(run.note, flush=True)
        return run

    async def go() -> int:
        intervener = choose_intervener(args.on_manual, None)
        first = await prepare(intervener)
        if first.done:  # a decision aborted it: nothing to run
            outcome = await first.outcome()
            if json_out is not None:
                _write_json(json_out, outcome.result)
            print(f"{first.note} `flowhost runs show {first.run_id}{flag}` shows the result.")
            return EXIT_CODES["aborted"]
        return await drive(args, _given(first), json_out, metrics)

    return run_main(go())


def _plan(args: argparse.Namespace, stored: api.Stored) -> Plan:
    """The plan the run goes on with: its own spec, or with --reload-spec the edited file;
    either way the user hears about a spec file that changed since the run started."""
    record = stored.record
    if args.reload_spec:
        plan, reloaded = api.reload_spec(stored)
        print(reload_note(reloaded), file=sys.stderr)
        return plan
    if edited_spec(record) is not None:
        print(f"note: {record.spec_path} changed since run {record.run_id} started; it goes "
              "on with the spec it started with (stored with the run). To take the edited "
              f"spec: flowhost resume {record.run_id} --reload-spec", file=sys.stderr)
    return load_run_plan(record, stored.ctx)


def reload_note(reloaded: SpecReloaded) -> str:
    parts = [f"changed: {', '.join(reloaded.changed)}" if reloaded.changed
             else "no step's definition changed",
             *([f"run again: {', '.join(reloaded.rerun)}"] if reloaded.rerun else []),
             *([f"added: {', '.join(reloaded.added)}"] if reloaded.added else []),
             *([f"removed: {', '.join(reloaded.removed)}"] if reloaded.removed else [])]
    kept = "; every other finished step keeps its result"
    return f"Reloaded {reloaded.path}: {'; '.join(parts)}{kept}."


def _given(run: Run) -> Callable[[Intervener], Awaitable[Run]]:
    async def prepared(intervener: Intervener) -> Run:
        return run

    return prepared


def _decide_now(args: argparse.Namespace, plan: Plan, point: Checkpoint, events: list[Event]
                ) -> list[tuple[InterventionRequested, InterventionResolved]] | None:
    """Answers for a waiting run's open questions, as ``run`` would get them: asked on the
    terminal, or given by ``--on-manual fail|abort|skip``; None leaves the run waiting."""
    intervener = choose_intervener(args.on_manual, None)
    if isinstance(intervener, PolicyIntervener) and (
            args.on_manual is None or intervener.action == "wait"):
        return None  # no one to ask and nothing said: it stays waiting
    answers: list[tuple[InterventionRequested, InterventionResolved]] = []
    for step_id, asked in point.waiting.items():
        planned = plan.steps.get(step_id)
        tried = tuple(AttemptSummary(e.plugin, e.attempt, e.error_type, e.message, e.duration_s)
                      for e in events if isinstance(e, AttemptFailed) and e.step_id == step_id)
        purpose = f": {planned.step.purpose}" if planned and planned.step.purpose else ""
        request = InterventionRequest(
            step_id=step_id, label=f"{planned.index if planned else '?'}{purpose}",
            plugin=asked.plugin, error=asked.error, error_type=asked.error_type,
            hint=asked.hint, attempts=tried,
            output_schema=planned.invoker.output_schema if planned else {},
            timeout_s=asked.timeout_s, default=asked.default or "fail", asked_at=asked.ts,
            seq=asked.seq)
        resolution = asyncio.run(intervener.resolve(request))
        answer = InterventionResolved(run_id=asked.run_id, step_id=step_id,
                                      action=resolution.action,  # type: ignore[arg-type]
                                      outputs=resolution.outputs, by=resolution.by,
                                      plugin=asked.plugin)
        if resolution.at is not None:
            answer.ts = resolution.at
        answers.append((asked, answer))
    return answers


