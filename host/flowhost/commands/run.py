"""``flowhost run``: check the spec, run it through the Python API with live progress and
checkpoints, write the result. ``drive`` (the part after the run exists) is shared with
``flowhost resume``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flowhost import api, cli
from flowhost.context import RunContext, make_context
from flowhost.handle import Run
from flowhost.intervene import Intervener, Policy, PolicyIntervener, TerminalIntervener
from flowhost.masked_streams import masked_std_streams
from flowhost.problems import UserInputError
from flowhost.progress import ProgressListener, make_progress
from flowhost.result import RunResult
from flowhost.threads import run_main

if TYPE_CHECKING:
    from flowhost.metrics.process import Metrics

EXIT_CODES: dict[str, int] = {"success": 0, "failed": 1, "aborted": 1, "waiting": 3,
                              "interrupted": 130, "cancelled": 1}


def cli_context(args: argparse.Namespace) -> RunContext:
    """The run's context as the command line gives it: this directory, this environment."""
    return make_context(state_dir=getattr(args, "state_dir", None))


def run_command(args: argparse.Namespace) -> int:
    with process_metrics(args) as metrics:  # first: a bad --metrics-listen is exit 2 now
        pause_gc_until_the_run()
        ctx = cli_context(args)
        checked = api.check_spec(args.file, ctx, overrides=args.overrides)
        json_out = json_out_path(args)

        async def prepare(intervener: Intervener) -> Run:
            run = await api.prepare_run(args.file, context=ctx, checked=checked,
                                        overrides=args.overrides, on_manual=intervener,
                                        max_parallel=args.max_parallel,
                                        use_cache=not args.no_cache)
            print(f"run_id: {run.run_id}", flush=True)
            return run

        # (run_main: a plugin's stuck asyncio.to_thread must not keep the command alive)
        return run_main(drive(args, prepare, json_out, metrics))


def pause_gc_until_the_run() -> None:
    """In the `flowhost` process (see ``keep_for_the_run``), no cyclic GC from here until
    the run starts: the first collection after planning would scan all the plan once more,
    about a microsecond a step of a chain."""
    if cli.short_lived:
        gc.disable()


def keep_for_the_run() -> None:
    """In the `flowhost` process, which froze what it had imported so that the cyclic GC
    skips it (``cli._short_lived``), freeze what was made since, which lives as long as
    the run too: the checked spec, the prepared run, and prometheus_client when the run
    has metrics; then let the GC collect again.
    Scanning them again at every collection cost a long chain about 7 microseconds a
    step. (A program that embeds flowhost, or calls ``cli.main`` with its arguments, is
    left alone. ``gc.get_freeze_count`` would tell too, but counts the frozen objects one
    by one: a millisecond and more once a long plan is frozen.)"""
    if cli.short_lived:
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def process_metrics(args: argparse.Namespace) -> Iterator[Metrics | None]:
    """The run's metrics when ``--metrics-listen`` or ``--pushgateway`` asks for them
    (served from now until the run ends); None, and no ``prometheus_client`` import,
    when neither does."""
    listen, gateway = getattr(args, "metrics_listen", None), getattr(args, "pushgateway", None)
    if listen is None and gateway is None:
        yield None
        return
    from flowhost.metrics.process import Metrics

    metrics = Metrics(listen=listen, pushgateway=gateway)
    try:
        if metrics.server is not None:
            print(f"flowhost: metrics on {metrics.server.url}", file=sys.stderr, flush=True)
        yield metrics
    finally:
        metrics.close()


class _Screen:
    """The progress view, once there is one: a prompt holds it back while it asks."""

    def __init__(self) -> None:
        self.progress: ProgressListener | None = None

    def hold(self) -> None:
        if self.progress is not None:
            self.progress.hold()

    def release(self) -> None:
        if self.progress is not None:
            self.progress.release()


async def drive(args: argparse.Namespace, prepare: Callable[[Intervener], Awaitable[Run]],
                json_out: Path | None, metrics: Metrics | None = None) -> int:
    """Run what ``prepare`` makes with the progress view, Ctrl-C and the closing words; the
    exit code."""
    screen = _Screen()
    run = await prepare(choose_intervener(args.on_manual, screen))
    keep_for_the_run()
    if metrics is not None:
        run.observe(metrics.observer)
    # (what a local plugin prints itself goes through these streams too: masked)
    with masked_std_streams(run.masker):
        progress = make_progress(enabled=not args.no_progress, stream=sys.stdout,
                                 estimate_s=run.estimate_s, carried=run.carried_steps,
                                 earlier_s=run.earlier_s,
                                 term=os.environ.get("TERM"), verbose=args.verbose)
        screen.progress = progress
        run.observe(progress)
        try:
            with _interruptible(run):
                outcome = await run.outcome()
        finally:
            progress.close()
    status = conclude(args, run, outcome.status, outcome.checkpoint_failure)
    if metrics is not None:
        metrics.pushed(run.workflow_id, report=_say)
    if json_out is not None:
        _write_json(json_out, outcome.result)
    return EXIT_CODES.get(status, 1)


@contextlib.contextmanager
def _interruptible(run: Run) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) interrupts the run cleanly, a second one exits."""
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            from flowhost.checks.process import kill_running_commands

            kill_running_commands()
            os._exit(130)  # the user insists; nothing is left to save
        run.interrupt("cancelled by the user")

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not the main thread, or a platform without signals: Ctrl-C then stops abruptly.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def conclude(args: argparse.Namespace, run: Run, status: str, failure: str | None) -> str:
    """Tell the user how to go on; the status the exit code comes from."""
    from flowhost.commands.messages import pending_decisions, state_flag

    run_id, flag = run.run_id, state_flag(args)
    if failure is not None:
        print(f"flowhost: {failure}.\nThe steps finished before are saved: once that is "
              f"fixed, continue with: flowhost resume {run_id}{flag}", file=sys.stderr)
        return "failed"
    if status == "interrupted":
        print(f"Interrupted: running steps were cancelled and checkpointed. Continue "
              f"with: flowhost resume {run_id}{flag}", file=sys.stderr)
    elif status == "waiting":
        print(run.redact(pending_decisions(run_id, run.waiting, flag)))
    return status


def _say(message: str) -> None:
    print(f"flowhost: {message}", file=sys.stderr, flush=True)


def choose_intervener(on_manual: str | None, screen: _Screen | None) -> Intervener:
    """Ask on the terminal when there is one and no --on-manual was given."""
    if on_manual is None and sys.stdin.isatty() and sys.stdout.isatty():
        if screen is None:
            return TerminalIntervener()
        return TerminalIntervener(hold=screen.hold, release=screen.release)
    # CONTRACT §6: fail (the default) fails the step and its on_failure decides; abort
    # stops the run as a person's abort does.
    policies: dict[str | None, Policy] = {"abort": "abort", "skip": "skip", "wait": "wait"}
    return PolicyIntervener(policies.get(on_manual, "fail"))


def json_out_path(args: argparse.Namespace) -> Path | None:
    """Where to write the result, checked before the run starts: a run should not end in an
    error about a file it could have known it cannot write."""
    if not args.json_out:
        return None
    try:
        return _writable(args.json_out)
    except RuntimeError:  # Python 3.11's Path.resolve() on a symbolic link loop
        raise UserInputError(f"--json-out {args.json_out}: a symbolic link on the path loops; "
                             "point it at a real file, or pass another path") from None
    except OSError as exc:  # a name too long, a loop, a directory that cannot be read
        raise UserInputError(f"--json-out {args.json_out}: cannot write there "
                             f"({exc.strerror or exc})") from None


def _writable(given: str) -> Path:
    json_out = Path(given)
    if json_out.is_dir():
        raise UserInputError(f"--json-out {given}: is a directory; name the file to "
                             "write, e.g. --json-out result.json")
    if json_out.exists() and not json_out.is_file():  # a FIFO or a device, /dev/stdout
        if not os.access(json_out, os.W_OK):
            raise UserInputError(f"--json-out {given}: cannot write there "
                                 "(permission denied)")
        return json_out
    if json_out.is_symlink():
        json_out = json_out.resolve()  # replace the file it points to, keep the link
    if not json_out.parent.is_dir():
        raise UserInputError(f"--json-out {given}: directory {json_out.parent} does "
                             "not exist")
    probe = _temporary(json_out)
    probe.touch()
    probe.unlink()
    return json_out


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_json(path: Path, result: RunResult) -> None:
    """Whole or not at all for a file (written aside, then renamed over it); a FIFO or a
    device such as /dev/stdout is written into, never replaced. The run is recorded before
    this: when the result cannot be written, the error (exit 2) says how to get it."""
    text = json.dumps(result.model_dump(mode="json"), indent=2) + "\n"
    try:
        _write_text(path, text)
    except OSError as exc:
        raise UserInputError(
            f"--json-out {path}: could not write the result ({exc.strerror or exc}). The run "
            f"itself ended ({result.status}) and is recorded: `flowhost runs show "
            f"{result.run_id} --json` (with the same --state-dir) prints its result") from None


def _write_text(path: Path, text: str) -> None:
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as stream:
            stream.write(text)
        return
    temporary = _temporary(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk: leave no half-written file behind
        raise
