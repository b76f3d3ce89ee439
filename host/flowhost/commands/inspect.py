"""``flowhost validate`` and ``flowhost plan``: static checks, no step runs."""

from __future__ import annotations

import argparse
import json

from flowhost.api import check_spec
from flowhost.commands.run import cli_context
from flowhost.plan import Plan
from flowhost.spec_loading import LoadedSpec
from flowhost.wording import plural


def load_plan(args: argparse.Namespace) -> tuple[LoadedSpec, Plan]:
    """The spec named on the command line, checked; SpecError (exit 2) with every problem."""
    checked = check_spec(args.file, cli_context(args), overrides=args.overrides,
                         remember=False)  # looking creates no state dir
    return checked.spec, checked.plan


def validate_command(args: argparse.Namespace) -> int:
    spec, plan = load_plan(args)
    groups = len(plan.levels)
    print(f"✓ {spec.file} is valid: {plural(len(plan.steps), 'step')} in "
          f"{plural(groups, 'group')}, {plural(len(plan.final_checks), 'final check')}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    _, plan = load_plan(args)
    if args.json:
        data = {
            "workflow_id": plan.workflow.workflow_id,
            "groups": [
                [
                    {
                        "id": sid,
                        "plugin": plan.steps[sid].step.plugin,
                        "version": plan.steps[sid].invoker.version,
                        "transport": plan.steps[sid].invoker.transport,
                        "needs": list(plan.steps[sid].deps),
                        "purpose": plan.steps[sid].step.purpose,
                    }
                    for sid in group
                ]
                for group in plan.levels
            ],
        }
        print(json.dumps(data, indent=2))
        return 0
    workflow = plan.workflow
    about = f" — {workflow.description}" if workflow.description else ""
    print(f"Workflow {workflow.workflow_id}: {plural(len(plan.steps), 'step')} in "
          f"{plural(len(plan.levels), 'group')}{about}")
    for number, group in enumerate(plan.levels, start=1):
        together = " (run in parallel)" if len(group) > 1 else ""
        print(f"Group {number}{together}:")
        for sid in sorted(group, key=lambda s: plan.steps[s].index):
            step = plan.steps[sid]
            after = f"  after {', '.join(step.deps)}" if step.deps else ""
            purpose = f" — {step.step.purpose}" if step.step.purpose else ""
            fallbacks = "".join(f" → fallback {fb.spec.plugin}" for fb in step.fallbacks)
            print(f"  {step.index}. {sid}: {step.step.plugin} {step.invoker.version} "
                  f"({step.invoker.transport}){fallbacks}{purpose}{after}")
    if plan.final_checks:
        kinds = ", ".join(check.kind for check in plan.final_checks)
        print(f"Final validation: {kinds}")
    return 0
