"""``flowhost run``: check the spec, run it with live progress and checkpoints, write the
result. ``execute`` is shared with ``flowhost resume``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from flowhost.commands.common import load_plan
from flowhost.commands.durable import Durable
from flowhost.engine import Engine, new_run_id
from flowhost.events import Event, EventBus, RunStatus, StepFinished
from flowhost.intervene import Intervener, PolicyIntervener, TerminalIntervener
from flowhost.plan import Plan
from flowhost.problems import UserInputError
from flowhost.progress import ProgressListener, make_progress
from flowhost.result import RunResult, fold

EXIT_CODES: dict[str, int] = {"success": 0, "failed": 1, "aborted": 1, "waiting": 3,
                              "cancelled": 130}


def run_command(args: argparse.Namespace) -> int:
    spec, plan = load_plan(args)
    json_out = json_out_path(args)
    run_id = new_run_id()
    durable = Durable.begin(args, spec, plan, run_id)
    print(f"run_id: {run_id}", flush=True)
    return execute(args, plan, durable, json_out)


def json_out_path(args: argparse.Namespace) -> Path | None:
    """Where to write the result, checked before the run starts: a run should not end in an
    error about a file it could have known it cannot write."""
    if not args.json_out:
        return None
    json_out = Path(args.json_out)
    if json_out.is_dir():
        raise UserInputError(f"--json-out {args.json_out}: is a directory; name the file to "
                             "write, e.g. --json-out result.json")
    if json_out.exists() and not json_out.is_file():  # a FIFO or a device, /dev/stdout
        if not os.access(json_out, os.W_OK):
            raise UserInputError(f"--json-out {args.json_out}: cannot write there "
                                 "(permission denied)")
        return json_out
    if json_out.is_symlink():
        json_out = json_out.resolve()  # replace the file it points to, keep the link
    if not json_out.parent.is_dir():
        raise UserInputError(f"--json-out {args.json_out}: directory {json_out.parent} does "
                             "not exist")
    try:
        probe = _temporary(json_out)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserInputError(f"--json-out {args.json_out}: cannot write there "
                             f"({exc.strerror or exc})") from None
    return json_out


def execute(args: argparse.Namespace, plan: Plan, durable: Durable, json_out: Path | None, *,
            restored: Mapping[str, StepFinished] | None = None,
            rerun: frozenset[str] = frozenset(), prior: Sequence[Event] = ()) -> int:
    """Run ``plan`` (or what is left of it) with progress and checkpoints; the exit code."""
    bus = EventBus()
    durable.subscribe(bus)
    progress = make_progress(enabled=not args.no_progress, stream=sys.stdout,
                             estimate_s=durable.estimate(plan, args.max_parallel,
                                                         done=restored or {}),
                             carried=[f.status for f in (restored or {}).values()])
    bus.subscribe(progress)
    engine = Engine(plan, bus, run_id=durable.run_id, max_parallel=args.max_parallel,
                    intervener=choose_intervener(args.on_manual, progress),
                    cache=durable.cache, restored=restored, rerun=rerun,
                    resumed=bool(prior))
    durable.watch(engine)
    try:
        status = asyncio.run(_run_interruptible(engine))
    finally:
        progress.close()
        durable.close()
    assert bus.history is not None
    events = [*prior, *bus.history]
    result = fold(events, pattern=plan.workflow.pattern)
    outcome = durable.conclude(args, status, result, events)
    if json_out is not None:
        _write_json(json_out, result)
    return EXIT_CODES.get(outcome, 1)


async def _run_interruptible(engine: Engine) -> RunStatus:
    """Run the engine; the first Ctrl-C (or SIGTERM) cancels it cleanly, a second one exits."""
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            from flowhost.checks.process import kill_running_commands

            kill_running_commands()
            os._exit(130)  # the user insists; nothing is left to save
        engine.cancel("cancelled by the user")

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not the main thread, or a platform without signals: Ctrl-C then stops abruptly.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        return await engine.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def choose_intervener(on_manual: str | None, progress: ProgressListener | None) -> Intervener:
    """Ask on the terminal when there is one and no --on-manual was given."""
    if on_manual is None and sys.stdin.isatty() and sys.stdout.isatty():
        if progress is None:
            return TerminalIntervener()
        return TerminalIntervener(hold=progress.hold, release=progress.release)
    policy: Literal["abort", "skip", "wait"] = "abort"
    if on_manual in ("skip", "wait"):
        policy = "skip" if on_manual == "skip" else "wait"
    return PolicyIntervener(policy)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_json(path: Path, result: RunResult) -> None:
    """Whole or not at all for a file (written aside, then renamed over it); a FIFO or a
    device such as /dev/stdout is written into, never replaced."""
    text = json.dumps(result.model_dump(mode="json"), indent=2) + "\n"
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as stream:
            stream.write(text)
        return
    temporary = _temporary(path)
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
