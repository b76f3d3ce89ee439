"""``flowhost runs list|show|resolve`` and ``flowhost cache clear``, on the local state dir,
through ``flowhost.runs``."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from typing import Any, Literal

from flowhost import runs
from flowhost.commands.messages import pending_decisions, print_runs, state_flag
from flowhost.commands.run import cli_context
from flowhost.context import DEFAULT_STATE_DIR, STATE_DIR_ENV, RunContext
from flowhost.problems import UserInputError, did_you_mean
from flowhost.store import read

# Kept for scripts that imported it from here.
RunSummary = runs.RunSummary


def list_command(args: argparse.Namespace) -> int:
    ctx = cli_context(args)
    if not _has_state(ctx):
        print("[]" if args.json else f"No runs in {_shown(args)}.")
        return 0
    with runs.opened(ctx) as store:
        summaries = runs.summaries(store, args.limit)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"No runs in {store.path}.")
        return 0
    print_runs((s.run_id, s.workflow_id, s.status, f"{s.steps_completed}/{s.total_steps}",
                s.created_at) for s in summaries)
    return 0


def _has_state(ctx: RunContext) -> bool:
    """Whether there may be runs to show (a state dir that is a file: its error says)."""
    return ctx.state_dir.is_file() or runs.has_state(ctx)


def _shown(args: argparse.Namespace) -> str:
    """The state dir as the user named it."""
    return str(getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV)
               or DEFAULT_STATE_DIR)


def show_command(args: argparse.Namespace) -> int:
    ctx = cli_context(args)
    with runs.opened(ctx) as store:
        record = store.run(args.run_id)
        result = runs.stored_result(store, record)
        point = read(store.events(record))
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
        return 0
    print(f"Run {record.run_id}: {record.workflow_id} ({record.spec_path})")
    print(f"Status: {result.status}, {result.steps_completed} succeeded, "
          f"{result.steps_failed} failed, {result.steps_skipped} skipped of "
          f"{len(result.steps)} steps")
    for step in result.steps:
        extras = [f"{step.duration_s:.2f}s"] if step.status in ("success", "failed") else []
        extras += ["cached"] if step.cached else []
        extras += ["rerun after interruption"] if step.rerun_after_interruption else []
        extras += [f"used {step.used_plugin}"] if step.used_plugin != step.plugin else []
        line = f"  {step.status:<9} {step.id} ({step.plugin})"
        line += f"  {', '.join(extras)}" if extras else ""
        if step.error:
            line += f"\n            {step.error_type or 'Error'}: {step.error}"
            if step.traceback:  # a bug in the plugin: where it was raised, for its author
                line += "\n" + textwrap.indent(step.traceback, " " * 14)
        elif step.reason and step.status != "success":
            line += f"\n            {step.reason}"
        decided = step.interventions[-1] if step.interventions else None
        if decided is not None and decided.pending:
            line += (f"\n            decision {decided.action} (by {decided.by}) recorded, "
                     "pending: the next resume applies it")
        print(line)
    flag = state_flag(args)
    pending = [step.id for step in result.steps
               if step.interventions and step.interventions[-1].pending]
    if point.waiting:
        print(pending_decisions(record.run_id, point.waiting, flag))
    elif pending:
        print(f"Decided, not applied yet: {', '.join(pending)}. Continue with: "
              f"flowhost resume {record.run_id}{flag}")
    elif result.status == "interrupted":
        print(f"Continue with: flowhost resume {record.run_id}{flag}")
    return 0


def resolve_command(args: argparse.Namespace) -> int:
    ctx = cli_context(args)
    outputs = outputs_flag(args)
    action: Literal["retry", "skip", "abort"] = args.action
    point = runs.resolve_intervention(args.run_id, args.step, action, outputs=outputs,
                                      by="user", state_dir=ctx.location, env=ctx.env,
                                      workdir=ctx.workdir)
    run_id, flag = args.run_id, state_flag(args)
    others = [sid for sid in point.waiting if sid != args.step]
    print(f"Recorded: {action} for step '{args.step}' of run {run_id}.")
    if others:
        print(f"Still waiting for a decision: {', '.join(others)}.")
    else:
        print(f"Continue with: flowhost resume {run_id}{flag}")
    return 0


def outputs_flag(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--outputs``: a JSON object (its fit to the step's schema is checked later)."""
    if args.outputs is None:
        return None
    if args.action != "skip":
        raise UserInputError("--outputs goes with --action skip only: they stand in for the "
                             "outputs of the skipped step")
    try:
        outputs = json.loads(args.outputs)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"--outputs: not valid JSON ({exc})") from None
    if not isinstance(outputs, dict):
        raise UserInputError("--outputs: must be a JSON object, e.g. '{\"field\": \"value\"}'")
    return outputs


def _known_plugin(name: str, ctx: RunContext) -> None:
    """Nothing of ``name`` was cached: a typo says so (exit 2) instead of "Removed 0"."""
    from flowhost.catalog import Catalog

    installed = Catalog(ctx.config).names()
    if name in installed:
        return
    suggestion = did_you_mean(name, installed)
    raise UserInputError(
        f"--plugin {name}: no plugin of that name is installed, and nothing of it is cached"
        + (f"; {suggestion}" if suggestion else "; `flowhost plugins list` lists them"))


def cache_clear_command(args: argparse.Namespace) -> int:
    ctx = cli_context(args)
    if not _has_state(ctx):
        print(f"Nothing cached: no flowhost state in {_shown(args)}.")
        return 0
    with runs.opened(ctx) as store:
        removed = store.clear_cache(args.plugin)
    if args.plugin and not removed:
        _known_plugin(args.plugin, ctx)
    what = f" of {args.plugin}" if args.plugin else ""
    print(f"Removed {removed} cached result{'s' if removed != 1 else ''}{what} from "
          f"{store.path}.")
    return 0
