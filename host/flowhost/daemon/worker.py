"""A worker process of the daemon: it executes runs, one at a time, where plugin code may
crash, exit or hang without harming the daemon.

    python -m flowhost.daemon.worker --fd N --state-dir D [--config F] [--env-allow A,B]
        [--drain-timeout S] [--runs K] [--max-growth-mib M] [--max-parallel N]

It speaks JSON lines with the daemon over the socket ``--fd`` (``flowhost.daemon.channel``):

- daemon -> worker: ``{"op": "run", "run_id"}`` (execute it), ``{"op": "cancel", "run_id",
  "reason"}`` (stop it for good), ``{"op": "decided", "run_id"}`` (an answer to one of its
  questions is recorded: apply it), ``{"op": "exit"}``;
- worker -> daemon: ``{"type": "ready", "pid"}``, then for each run ``{"type": "started",
  "run_id", "after"}`` and ``{"type": "ended", "run_id", "status", "message", "last",
  "after", "upto"}`` (``flowhost.daemon.reports``); ``status`` is the run's (``success``,
  ``failed``, ``aborted``, ``cancelled``, ``waiting``, ``interrupted``) or what kept it
  from going on: ``busy`` (another process owns it), ``done`` (it had finished already),
  ``error`` (it cannot go on: ``message`` says why); ``last``: this worker takes no more
  runs and exits (after ``--runs`` runs, or once it grew by more than ``--max-growth-mib``
  since its first run: what plugins leaked goes with it; a worker otherwise lives long, as
  starting one costs more than most runs); ``after`` and ``upto``: the run's journal seqs
  it wrote, ``after < seq <= upto`` (the run's last seq when it took the lease, and the
  last one it committed), which the daemon's metrics count on a shared store; while it
  executes, ``{"type": "committed", "run_id", "upto"}`` every ``COMMITTED_S`` that it
  wrote more (so a replica counts what its worker wrote as it goes, and no more).

A run is taken over as ``flowhost resume`` takes one (its lease, its checkpoints: a
submitted run that has no events yet runs whole). A question to a person waits while the
run's other branches go on (``flowhost.daemon.asking``): an answer over the API then goes on
with the step at once; once nothing else of the run executes, the run ends ``waiting`` and
the worker is free (the daemon queues the run again when it is answered). SIGTERM drains:
running steps get ``--drain-timeout`` seconds, what is left ends ``interrupted`` (open
questions stay open).
A worker that dies costs only the run it executes: the daemon sees its exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from flowhost import api
from flowhost.config import HostConfig, load_config
from flowhost.context import make_context
from flowhost.daemon.asking import Asking
from flowhost.daemon.channel import Channel, die_with_parent
from flowhost.daemon.environment import run_env
from flowhost.daemon.reports import Committed, Ended, Started
from flowhost.events import Event
from flowhost.execution import Outcome
from flowhost.handle import Run
from flowhost.masked_streams import masked_std_streams
from flowhost.plan import Plan
from flowhost.problems import StorageError, UserInputError
from flowhost.questions import settle
from flowhost.resumption import load_run_plan
from flowhost.store import read
from flowhost.threads import run_main

DEFAULT_RUNS = 1000  # then the worker is replaced, or sooner when it grew by
DEFAULT_MAX_GROWTH_MIB = 256  # this much memory since its first run
COMMITTED_S = 0.1  # how often an executing worker says how far it committed


class Numbered:
    """The last seq the run's journal writer gave an event (it sees each event before any
    observer does), from ``after``, the run's last seq when the worker took it."""

    def __init__(self, after: int) -> None:
        self.seq = after
        self.told = after  # the last ``committed`` report

    def __call__(self, event: Event) -> None:
        self.seq = max(self.seq, event.seq)


def last_committed(outcome: Outcome, numbered: Numbered) -> int:
    """The last seq the worker committed of the run: every event it gave its journal writer
    (or appended itself) was committed unless its checkpoint failed. Then only what it
    told is sure (past a lost lease, the seqs after it may be the next owner's)."""
    if outcome.checkpoint_failure is not None:
        return numbered.told
    return max([numbered.told, *(event.seq for event in outcome.events)])


def rss_mib() -> float:
    """This process's resident memory now (Linux; 0 elsewhere: no retirement by memory)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Worker:
    def __init__(self, channel: Channel, args: argparse.Namespace, config: HostConfig) -> None:
        self.channel = channel
        self.state_dir = args.state_dir
        self.drain_timeout: float = args.drain_timeout
        self.max_parallel: int = args.max_parallel
        self.config = config
        self.env = run_env(os.environ, [n for n in args.env_allow.split(",") if n])
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.jobs: asyncio.Queue[str | None] = asyncio.Queue()
        self.current: Run | None = None
        self.current_id: str | None = None
        self.asking: Asking | None = None  # the questions of the current run
        self.cancelled: dict[str, str] = {}  # run id -> reason, asked before it started
        self.masked: tuple[str, ...] = ()  # the daemon's tokens: masked like secrets
        self.draining = False
        self._drain_task: asyncio.Task[object] | None = None

    # -- commands ------------------------------------------------------------------------
    async def listen(self) -> None:
        """Take the daemon's commands; its end going away is an ``exit``."""
        while True:
            message = await self.channel.receive()
            if message is None or message.get("op") == "exit":
                self.drain()
                await self.jobs.put(None)
                return
            op, run_id = message.get("op"), str(message.get("run_id", ""))
            if op == "run":
                await self.jobs.put(run_id)
            elif op == "mask":
                self.masked = tuple(str(value) for value in message.get("values") or ())
            elif op == "store":  # a store URL (it may hold a password): never in argv
                self.state_dir = str(message.get("location") or self.state_dir)
            elif op == "cancel":
                self.cancel(run_id, str(message.get("reason") or "cancelled through the API"))
            elif op == "decided" and self.asking is not None and self.current_id == run_id:
                self.asking.poke()

    def cancel(self, run_id: str, reason: str) -> None:
        if self.current is not None and self.current_id == run_id:
            self.current.cancel(reason)
        else:
            self.cancelled[run_id] = reason

    def drain(self) -> None:
        """SIGTERM: start nothing new; the run going on gets the drain timeout."""
        if self.draining:
            return
        self.draining = True
        self.jobs.put_nowait(None)
        if self.asking is not None:
            self.asking.park_all()
        if self.current is not None and not self.current.done:
            self._drain_task = asyncio.ensure_future(
                self.current.drain(self.drain_timeout, "the daemon is stopping"))

    # -- runs ----------------------------------------------------------------------------
    async def execute(self, run_id: str) -> Ended:
        """Take the run over and carry it as far as it goes here: what it came to."""
        try:
            taken = self._take(run_id)
        except UserInputError as exc:
            return Ended(run_id=run_id, status="error", message=str(exc))
        if isinstance(taken, Ended):
            return taken
        stored, after = taken
        asking = Asking(stored.store, stored.record)
        try:
            run = await api.prepare_resume(stored=stored, on_manual=asking,
                                           plan=await self._plan(stored),
                                           max_parallel=self.max_parallel, report=self._report)
        except UserInputError as exc:  # its spec no longer checks, say
            return Ended(run_id=run_id, status="error", message=str(exc), after=after)
        asking.watch(run)
        if self.draining:
            asking.park_all()
        self.current, self.current_id, self.asking = run, run_id, asking
        numbered = Numbered(after)
        run.observe(numbered)
        telling = asyncio.ensure_future(self._tell_committed(run_id, numbered))
        try:
            await self.channel.send(Started(run_id=run_id, after=after).model_dump())
            run.start()
            reason = self.cancelled.pop(run_id, None)
            if reason is not None:
                run.cancel(reason)
            elif self.draining:
                self._drain_task = asyncio.ensure_future(
                    run.drain(self.drain_timeout, "the daemon is stopping"))
            with masked_std_streams(run.masker):  # a local plugin's prints: the daemon's log
                outcome = await run.outcome()
        finally:
            telling.cancel()
            self.current = self.current_id = self.asking = None
        return Ended(run_id=run_id, status=outcome.status,
                     message=outcome.checkpoint_failure or "", after=after,
                     upto=last_committed(outcome, numbered))

    async def _tell_committed(self, run_id: str, numbered: Numbered) -> None:
        """Every ``COMMITTED_S``: how far the run's journal is this worker's. What was
        numbered a turn ago is committed by now (a step's end is committed before the
        engine goes on, its start as soon as the event loop is idle); what was numbered
        since may not be yet, and is told next time."""
        seen = numbered.seq
        while True:
            await asyncio.sleep(COMMITTED_S)
            if seen > numbered.told:
                numbered.told = seen
                await self.channel.send(Committed(run_id=run_id, upto=seen).model_dump())
            seen = numbered.seq

    async def _plan(self, taken: api.Stored) -> Plan:
        """The run's plan, the daemon's tokens among what it masks."""
        try:
            plan = await asyncio.to_thread(load_run_plan, taken.record, taken.ctx)
        except BaseException:  # (as prepare_resume lets go of a run it cannot go on with)
            taken.store.release(taken.lease)
            taken.store.close()
            raise
        plan.masked = self.masked
        return plan

    def _take(self, run_id: str) -> tuple[api.Stored, int] | Ended:
        """Own the run, and the run's last seq once owned (what follows is this worker's);
        or ``busy`` when another process owns it, ``done`` when it finished."""
        # (the daemon passes an absolute state dir, or a URL: no workdir is needed)
        where = make_context(workdir="/", env=self.env, state_dir=self.state_dir,
                             config=self.config)
        store = api.open_store(where, create=False)
        try:
            record = store.run(run_id)
            lease = store.acquire(record, self.owner)
            if lease is None:
                store.close()
                return Ended(run_id=run_id, status="busy")
            events = store.events(record)
            # (read under the lease: no one else writes to the run now, so every seq after
            # this one is this worker's until it lets go)
            after = events[-1].seq if events else 0
            events = settle(store, record, events)
            point = read(events)
            if point.done:
                store.release(lease)
                store.close()
                # (what settle logged, answers say, is this worker's all the same)
                return Ended(run_id=run_id, status="done", after=after,
                             upto=events[-1].seq if events else 0)
            # a run another host's daemon accepted gets its working directory here (one that
            # cannot be made shows in the run's first step that uses it)
            with contextlib.suppress(OSError):
                Path(record.cwd).mkdir(parents=True, exist_ok=True)
            ctx = make_context(workdir=record.cwd, env=self.env, state_dir=where.location,
                               config=self.config)
        except BaseException:
            store.close()
            raise
        return api.Stored(store, record, lease, events, point, ctx), after

    def _report(self, message: str) -> None:
        run = f" run {self.current_id}" if self.current_id else ""
        print(f"flowhost worker {os.getpid()}{run}: {message}", file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> int:
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides; a terminal's ^C is its
    config = load_config(args.config) if args.config else HostConfig()
    channel = await Channel.over(socket.socket(fileno=args.fd))
    worker = Worker(channel, args, config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.drain)
    listener = asyncio.ensure_future(worker.listen())
    await channel.send({"type": "ready", "pid": os.getpid()})
    done = 0
    baseline: float | None = None  # the memory after the first run: imports and caches
    while done < args.runs and not worker.draining:
        run_id = await worker.jobs.get()
        if run_id is None:
            break
        try:
            ended = await worker.execute(run_id)
        except StorageError as exc:
            ended = Ended(run_id=run_id, status="interrupted",
                          message=f"storage failure: {exc}")
        done += 1
        grown = rss_mib()
        baseline = grown if baseline is None else baseline
        last = (done >= args.runs or worker.draining
                or grown - baseline > args.max_growth_mib)
        if not await channel.send(ended.model_copy(update={"last": last}).model_dump()):
            break
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    channel.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowhost.daemon.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, default=os.getppid())
    parser.add_argument("--state-dir", required=True, help="a dir, or a store URL")
    parser.add_argument("--config", default=None)
    parser.add_argument("--env-allow", default="")
    parser.add_argument("--drain-timeout", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--max-growth-mib", type=float, default=DEFAULT_MAX_GROWTH_MIB)
    parser.add_argument("--max-parallel", type=int, default=8)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
