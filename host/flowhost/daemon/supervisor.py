"""The supervisor: the queue of accepted runs, the worker processes that execute them (at
most ``max_runs`` at once, in submission order), and the checker that checks submitted
specs. Plugin code runs only in those processes.

- A worker executes one run at a time and takes the next one after it: workers live long,
  as starting one (a Python process, its imports) costs more than most runs; one is
  replaced after ``runs_per_worker`` runs, or sooner once it grew by ``max_growth_mib``,
  taking with it what plugins leaked. A worker starts in the background: the other
  workers take the next runs meanwhile.
- A question to a person waits in the worker while the run's other branches go on (an
  answer goes to the worker: ``decided``); once nothing else of the run executes, the run
  ends ``waiting`` and frees its worker, and an answer queues it again (``enqueue``). The
  questions' ``manual.timeout`` of waiting runs are the supervisor's to apply, when they
  are up (``sweeps.apply_timeouts``; the deadlines are the questions' own, so they survive
  restarts).
- A worker that dies (SIGKILL, a segfault, ``os._exit``) costs only its run, which is
  queued again (at-least-once), and failed with the reason after ``max_deaths`` deaths.
- ``drain``: no more runs start; the workers get ``drain_timeout`` seconds to finish their
  running steps, then what is left of their runs is checkpointed ``interrupted`` (the next
  start goes on with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowhost.daemon import executions, records, reports, sweeps
from flowhost.daemon.checking import CheckerClient
from flowhost.daemon.environment import helper_env
from flowhost.daemon.helpers import Helper, HelperError, start
from flowhost.daemon.journal import Journal, Tails
from flowhost.daemon.run_queue import RunQueue
from flowhost.problems import StorageError
from flowhost.store import RunRecord, Store
from flowhost.store.postgres.url import with_environment

log = logging.getLogger("flowhost.daemon")
MAX_DEATHS = 3
RUNS_PER_WORKER = 1000
MAX_GROWTH_MIB = 256.0
FINAL = ("success", "failed", "aborted", "cancelled")


@dataclass(eq=False)
class _Slot:
    helper: Helper
    run_id: str | None = None
    last: bool = False
    ended: asyncio.Future[str] | None = None  # the run's status, when the worker says


def _live_status(store: Store, record: RunRecord) -> str:
    return store.live_status(record)


@dataclass(frozen=True)
class SupervisorConfig:
    state_dir: Path
    store_url: str | None = None  # PostgreSQL instead of the state dir's SQLite
    max_runs: int = 4
    drain_timeout: float = 20.0
    config_path: Path | None = None
    env_allow: Sequence[str] = ()
    max_deaths: int = MAX_DEATHS
    runs_per_worker: int = RUNS_PER_WORKER
    max_growth_mib: float = MAX_GROWTH_MIB
    max_parallel: int = 8
    # masked in everything the runs store and return (the daemon's tokens); sent to each
    # worker over its channel, never in its arguments or environment
    masked: tuple[str, ...] = field(default=(), repr=False)


class Supervisor:
    def __init__(self, config: SupervisorConfig, journal: Journal, tails: Tails) -> None:
        self.config = config
        self.journal = journal
        self.tails = tails
        self.queue = RunQueue()
        self.executing: dict[str, _Slot | None] = {}  # None: its worker is starting
        self.idle: list[_Slot] = []
        self.slots: set[_Slot] = set()
        self.deaths: dict[str, int] = {}
        self.cancels: dict[str, str] = {}
        self.orphans: dict[str, RunRecord] = {}  # owned by another process; go on after
        self.draining = False
        self.checker = CheckerClient(config)
        self.deadlines: dict[str, float] = {}  # waiting runs: their next manual.timeout
        self._wake = asyncio.Event()
        self.deadline_added = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Go on with every accepted, unfinished run no one owns; start dispatching."""
        await self.checker.start()
        # (replicas on a shared database claim runs, as many as they have free slots for)
        found = await self.journal.call(records.unfinished, self.config.store_url is not None)
        for record in found.to_run:
            self.queue.push(record)
        for record in found.owned:
            self.orphans[record.run_id] = record
        for run_id, deadline in found.deadlines.items():
            self.schedule(run_id, deadline)
        if found.to_run or found.owned:
            log.info("flowhost serve: going on with %d unfinished run(s)%s",
                     len(found.to_run) + len(found.owned),
                     f" ({len(found.owned)} once another process lets go of them)"
                     if found.owned else "")
        self._tasks.append(asyncio.ensure_future(self._dispatch()))
        self._tasks.append(asyncio.ensure_future(sweeps.watch_orphans(self)))
        self._tasks.append(asyncio.ensure_future(sweeps.apply_timeouts(self)))
        if self.config.store_url is not None:
            self._tasks.append(asyncio.ensure_future(
                sweeps.claim_runs(self, self.config.store_url)))
        self._wake.set()

    def enqueue(self, record: RunRecord) -> None:
        if self.draining or record.run_id in self.executing:
            return
        self.queue.push(record)
        self._wake.set()

    async def decided(self, run_id: str) -> None:
        """An answer to a question of a run a worker executes is recorded: tell the worker
        (a run that stopped to wait meanwhile is queued when its worker says it ended)."""
        slot = self.executing.get(run_id)
        if slot is not None:
            await slot.helper.channel.send({"op": "decided", "run_id": run_id})

    def schedule(self, run_id: str, deadline: float) -> None:
        """Look at the run's questions again at ``deadline`` (their manual.timeout)."""
        if deadline < self.deadlines.get(run_id, float("inf")):
            self.deadlines[run_id] = deadline
            self.deadline_added.set()

    async def drain(self) -> None:
        """No new runs; running ones checkpoint within the drain timeout; workers exit."""
        self.draining = True
        self._wake.set()
        for slot in list(self.slots):
            slot.helper.signal(signal.SIGTERM)
        ends = [asyncio.ensure_future(slot.helper.proc.wait()) for slot in list(self.slots)]
        if ends:
            _, late = await asyncio.wait(ends, timeout=self.config.drain_timeout + 10)
            for slot in list(self.slots):  # past the drain timeout and a margin: stop them
                if slot.helper.proc.returncode is None:
                    slot.helper.kill()
            if late:
                await asyncio.wait(late, timeout=5)
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for slot in list(self.slots):
            slot.helper.kill()
        await self.checker.close()

    def kill_all(self) -> None:
        """The second signal: end every helper at once."""
        for slot in list(self.slots):
            slot.helper.kill()
        self.checker.kill()

    # -- runs ------------------------------------------------------------------------------
    async def cancel(self, run_id: str, reason: str) -> str:
        """Cancel a run for good; its status afterwards."""
        if self.queue.remove(run_id) or run_id not in self.executing:
            status = await self.journal.call(records.finish, run_id, "cancelled", reason)
            self.tails.poke()
            if status is not None:
                return status
            # another process owns it: tell it if it is one of ours, else it is theirs
            if run_id not in self.executing:
                record = await self.journal.call(records.find, run_id)
                return await self.journal.call(_live_status, record)
        self.cancels[run_id] = reason
        slot = self.executing.get(run_id)
        if slot is not None:
            await slot.helper.channel.send({"op": "cancel", "run_id": run_id,
                                            "reason": reason})
            if slot.ended is not None:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(slot.ended), 10.0)
        return "running"

    @property
    def counts(self) -> dict[str, int]:
        return {"queued": len(self.queue), "executing": len(self.executing),
                "workers": len(self.slots)}

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (self.queue and len(self.executing) < self.config.max_runs
                   and not self.draining):
                run_id = self.queue.pop()
                self.executing[run_id] = None
                if self.idle:
                    await self._assign(self.idle.pop(), run_id)
                else:  # its worker starts aside: the idle ones take the next runs meanwhile
                    self._tasks = [task for task in self._tasks if not task.done()]
                    self._tasks.append(asyncio.ensure_future(self._start_for(run_id)))

    async def _start_for(self, run_id: str) -> None:
        try:
            slot = await self._new_worker()
        except HelperError as exc:
            log.error("flowhost serve: %s; trying again in a second", exc)
            self.executing.pop(run_id, None)
            await asyncio.sleep(1.0)
            await self._requeue(run_id)
            return
        if run_id not in self.executing:  # cancelled while its worker started
            self._free(slot)
            return
        await self._assign(slot, run_id)

    async def _assign(self, slot: _Slot, run_id: str) -> None:
        slot.run_id = run_id
        slot.ended = asyncio.get_running_loop().create_future()
        self.executing[run_id] = slot
        await self._note(executions.handed, run_id)  # (before the worker can write)
        sent = await slot.helper.channel.send({"op": "run", "run_id": run_id})
        reason = self.cancels.get(run_id)
        if sent and reason is not None:
            await slot.helper.channel.send({"op": "cancel", "run_id": run_id,
                                            "reason": reason})

    async def _new_worker(self) -> _Slot:
        config = self.config
        # (a PostgreSQL URL, which may hold a password, goes over the channel: a process's
        # arguments are anyone's to read in ps)
        args = ["--state-dir", str(config.state_dir), "--drain-timeout",
                str(config.drain_timeout), "--runs", str(config.runs_per_worker),
                "--max-growth-mib", str(config.max_growth_mib),
                "--max-parallel", str(config.max_parallel),
                "--env-allow", ",".join(config.env_allow)]
        if config.config_path is not None:
            args += ["--config", str(config.config_path)]
        helper = await start("worker", "flowhost.daemon.worker", *args,
                             env=helper_env(os.environ, config.env_allow))
        if config.store_url is not None:  # before any run: the channel keeps the order
            # libpq's settings ($PGPASSWORD...) go in the URL, not in the worker's environment
            location = with_environment(config.store_url, os.environ)
            await helper.channel.send({"op": "store", "location": location})
        if config.masked:
            await helper.channel.send({"op": "mask", "values": list(config.masked)})
        slot = _Slot(helper)
        self.slots.add(slot)
        self._tasks.append(asyncio.ensure_future(self._follow(slot)))
        return slot

    def _free(self, slot: _Slot) -> None:
        slot.run_id, slot.ended = None, None
        if not slot.last and not self.draining and slot in self.slots:
            self.idle.append(slot)
        self._wake.set()

    async def _follow(self, slot: _Slot) -> None:
        """Read a worker's reports until it exits; its death costs its run."""
        while True:
            message = await slot.helper.channel.receive()
            if message is None:
                break
            run_id = slot.run_id
            try:
                report = reports.parse(message)
            except reports.ValidationError as exc:  # (a worker of this very install)
                log.error("flowhost serve: a worker's report makes no sense: %s", exc)
                continue
            if report is None or run_id is None or report.run_id != run_id:
                continue
            if isinstance(report, reports.Started):
                await self._note(executions.started, run_id, report.after)
                continue
            if isinstance(report, reports.Committed):
                await self._note(executions.committed, run_id, report.upto)
                continue
            slot.last = report.last
            ended = slot.ended
            self.executing.pop(run_id, None)
            await self._note(executions.let_go, run_id, report.status, report.after,
                             report.upto)
            await self._ended(run_id, report.status, report.message)
            if ended is not None and not ended.done():
                ended.set_result(report.status)
            self._free(slot)
        reason = await slot.helper.ended()
        self.slots.discard(slot)
        if slot in self.idle:
            self.idle.remove(slot)
        run_id = slot.run_id
        if run_id is not None:
            self.executing.pop(run_id, None)
            await self._note(executions.let_go, run_id, "died")
            await self._died(run_id, reason)
            if slot.ended is not None and not slot.ended.done():
                slot.ended.set_result("died")
        self._wake.set()

    async def _note(self, fn: Callable[..., None], run_id: str, *args: object) -> None:
        """On a shared store: note for this daemon's metrics what its workers execute
        (``flowhost.daemon.executions``); on SQLite every run of the state dir counts."""
        if self.config.store_url is None:
            return
        try:
            await self.journal.call(fn, run_id, *args)
        except StorageError as exc:  # the run goes on; only its metrics here miss events
            log.error("flowhost serve: metrics: cannot note run %s now: %s", run_id, exc)

    async def _ended(self, run_id: str, status: str, message: str) -> None:
        self.tails.poke()
        if status in FINAL or status == "done":
            self.deaths.pop(run_id, None)
            self.cancels.pop(run_id, None)
        elif status == "busy":
            record = await self.journal.call(records.find, run_id)
            self.orphans[run_id] = record
        elif status == "error":
            log.error("flowhost serve: run %s cannot go on: %s", run_id, message)
            await self._finish(run_id, "failed", message, "CannotResume")
        elif status == "interrupted" and not self.draining:
            await self._retry(run_id, message or "interrupted")
        elif status == "waiting":
            # an answer may have come while it still ran (then nothing waits any more)
            record = await self.journal.call(records.find, run_id)
            ready, deadline = await self.journal.call(records.waits, record)
            if ready:
                self.enqueue(record)
            elif deadline is not None:
                self.schedule(run_id, deadline)

    async def _died(self, run_id: str, reason: str) -> None:
        if self.draining:
            return  # checkpointed as far as it got: the next start goes on with it
        cancel = self.cancels.pop(run_id, None)
        if cancel is not None:
            await self._finish(run_id, "cancelled", cancel, "Cancelled")
            return
        await self._retry(run_id, f"its worker process {reason}")

    async def _retry(self, run_id: str, reason: str) -> None:
        deaths = self.deaths[run_id] = self.deaths.get(run_id, 0) + 1
        if deaths >= self.config.max_deaths:
            self.deaths.pop(run_id, None)
            why = (f"the run stopped {deaths} times without finishing; last time {reason}")
            log.error("flowhost serve: run %s failed: %s", run_id, why)
            await self._finish(run_id, "failed", why, "WorkerDied")
            return
        log.warning("flowhost serve: run %s: %s; running it again (%d of %d)", run_id,
                    reason, deaths + 1, self.config.max_deaths)
        await self._requeue(run_id)

    async def _requeue(self, run_id: str) -> None:
        record = await self.journal.call(records.find, run_id)
        if await self.journal.call(records.ready_to_go_on, record):
            self.enqueue(record)

    async def _finish(self, run_id: str, status: str, reason: str, error_type: str) -> None:
        done = await self.journal.call(records.finish, run_id, status, reason, error_type)
        self.tails.poke()
        if done is None:  # someone took it meanwhile: theirs to end
            record = await self.journal.call(records.find, run_id)
            self.orphans[run_id] = record
