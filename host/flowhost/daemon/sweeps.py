"""What the supervisor does on a clock rather than on a worker's report: it applies the
``manual.timeout`` of waiting runs' questions when they are up, goes on with runs another
process owned once it lets go of them, and, on a shared PostgreSQL store, claims runs
submitted to other daemons or left by one that died. Each is a loop the supervisor starts
with itself and cancels when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from flowhost.daemon import records
from flowhost.problems import StorageError
from flowhost.store import RunRecord, Store

if TYPE_CHECKING:
    from flowhost.daemon.supervisor import Supervisor

log = logging.getLogger("flowhost.daemon")
ORPHAN_POLL_S = 0.5
CLAIM_POLL_S = 1.0  # several daemons on PostgreSQL: how often each claims runs


async def apply_timeouts(sup: Supervisor) -> None:
    """Apply the defaults of waiting runs' questions when their timeout is up."""
    while True:
        now = time.time()
        for run_id in [r for r, at in sup.deadlines.items() if at <= now]:
            del sup.deadlines[run_id]
            try:
                expired = await sup.journal.call(records.expire, run_id, time.time())
            except records.NotFound:
                continue
            except StorageError as exc:  # the store is busy or failing: later
                log.error("flowhost serve: run %s: cannot apply a manual.timeout now "
                          "(%s); trying again in a second", run_id, exc)
                sup.deadlines[run_id] = time.time() + 1.0
                continue
            sup.tails.poke()
            if expired.goes_on:
                sup.enqueue(expired.record)
            elif expired.executing:
                await sup.decided(run_id)
            if expired.next is not None:
                sup.schedule(run_id, expired.next)
        sup.deadline_added.clear()
        first = min(sup.deadlines.values(), default=None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sup.deadline_added.wait(),
                                   None if first is None else max(first - time.time(), 0))


async def watch_orphans(sup: Supervisor) -> None:
    """Runs another process owned: go on with them once it lets go."""
    while True:
        await asyncio.sleep(ORPHAN_POLL_S)
        for run_id, record in list(sup.orphans.items()):
            if await sup.journal.call(_owned, record):
                continue
            del sup.orphans[run_id]
            if await sup.journal.call(records.ready_to_go_on, record):
                sup.enqueue(record)


async def claim_runs(sup: Supervisor, store_url: str) -> None:
    """On PostgreSQL: take runs submitted to other daemons, or left by one that died,
    never more than this one has free slots for (``flowhost.store.postgres.claim``):
    every ``CLAIM_POLL_S``, and at once when a notification says a run was submitted."""
    from flowhost.store.postgres.claim import Wakeups

    owner = f"{socket.gethostname()}:{os.getpid()}"
    hint, loop = asyncio.Event(), asyncio.get_running_loop()

    def wake() -> None:  # (on the listening thread)
        loop.call_soon_threadsafe(hint.set)

    wakeups = Wakeups(store_url, wake)
    wakeups.start()
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hint.wait(), CLAIM_POLL_S)
            hint.clear()
            await _claim_some(sup, owner)
    finally:
        wakeups.stop()


async def _claim_some(sup: Supervisor, owner: str) -> None:
    free = sup.config.max_runs - len(sup.executing) - len(sup.queue)
    if free <= 0 or sup.draining:
        return
    mine = [*sup.executing, *sup.queue.ids, *sup.orphans]
    try:
        claimed = await sup.journal.call(_claim, owner, free, mine)
    except StorageError as exc:  # the store is busy or failing: next time
        log.error("flowhost serve: cannot claim runs now: %s", exc)
        return
    for record in claimed:
        log.info("flowhost serve: claimed run %s", record.run_id)
        sup.enqueue(record)


def _owned(store: Store, record: RunRecord) -> bool:
    return store.owned(record)


def _claim(store: Any, owner: str, limit: int, exclude: list[str]) -> list[RunRecord]:
    claimed: list[RunRecord] = store.claim(owner, limit, exclude)
    return claimed
