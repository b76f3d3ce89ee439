"""The daemon's metrics on ``--metrics-listen``: the registry fed by ``JournalFeed`` (or,
on a store shared by several daemons, ``ExecutedFeed``: what this one executed), the
daemon's own gauges (runs queued, ready), and ``/readyz`` (503 while it drains or while its
state store does not answer).

The address is bound when this is made, before the daemon starts anything: one given with
``--metrics-listen`` (or ``[serve] metrics_listen``) that cannot be bound is an exit-2
message. The default address (127.0.0.1:9464) taken by another process is not worth
refusing to serve runs for: the daemon says so and goes on without metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flowhost.daemon.journal import Journal, Tails
from flowhost.metrics.endpoint import MetricsServer
from flowhost.metrics.executed import ExecutedFeed
from flowhost.metrics.families import Families
from flowhost.metrics.feed import JournalFeed
from flowhost.metrics.observer import MetricsObserver
from flowhost.problems import UserInputError

log = logging.getLogger("flowhost.daemon")


class DaemonMetrics:
    def __init__(self, listen: str, journal: Journal, tails: Tails, *, required: bool,
                 queued: Callable[[], int], draining: Callable[[], bool]) -> None:
        self.families = Families()
        self.observer = MetricsObserver(self.families)
        # On SQLite the daemon is the only one on its state dir: every run there is its to
        # count. On a shared store each replica counts what it executed.
        self.feed = (JournalFeed(journal, self.observer) if journal.store_url is None
                     else ExecutedFeed(journal, self.observer))
        tails.also_poke.append(self.feed.poke)
        self._draining = draining
        self.families.add_daemon(lambda: float(queued()), lambda: self.unready() is None)
        self.server: MetricsServer | None = None
        try:
            self.server = MetricsServer(listen, self.families.registry, ready=self.unready)
        except UserInputError as exc:
            if required:
                raise
            log.warning("flowhost serve: %s; serving no metrics (pass --metrics-listen "
                        "H:P to choose another address)", exc)

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def unready(self) -> str | None:
        """Why the daemon should get no traffic now (``/readyz``), or None."""
        if self._draining():
            return "draining: the daemon is stopping and accepts no new runs"
        return self.feed.unready()

    async def start(self) -> None:
        """Restore the unfinished runs, follow the journal, serve; before any worker."""
        await self.feed.start()
        if self.server is not None:
            self.server.start()
            log.info("flowhost serve: metrics on %s (also /healthz, /readyz)", self.url)

    async def close(self) -> None:
        await self.feed.close()
        if self.server is not None:
            self.server.close()
            self.server = None
