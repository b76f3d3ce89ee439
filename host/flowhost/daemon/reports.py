"""What a worker reports to its daemon over their channel (``flowhost.daemon.channel``), as
models: the daemon checks each line it reads from a process that runs plugin code.

Beside what a run came to, a worker says which of the run's journal seqs it wrote: it
alone writes to the run while it holds the run's lease (every write is fenced by the
lease's epoch), so ``after < seq <= upto`` are exactly its events. A replica on a shared
store counts those for its metrics (``flowhost.daemon.executions``): read by the daemon at
some other moment, the run's last seq may already hold another owner's events, or not yet
all of its worker's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Committed", "Ended", "Started", "ValidationError", "parse"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str


class Started(_Report):
    """The worker owns the run now and goes on with it."""

    type: Literal["started"] = "started"
    # the run's last seq when the worker took its lease: what follows is the worker's
    after: int | None = None


class Committed(_Report):
    """While it executes the run: the worker committed everything up to ``upto``."""

    type: Literal["committed"] = "committed"
    upto: int


class Ended(_Report):
    """The worker is done with the run (it ended, stopped, or could not go on)."""

    type: Literal["ended"] = "ended"
    status: str
    message: str = ""
    last: bool = False  # the worker takes no more runs and exits
    # the worker held the lease (None: it never did, the run was busy, or it cannot say)
    after: int | None = None
    # the last seq it committed (None: it cannot say; then the daemon reads the run's)
    upto: int | None = None


_KINDS: dict[object, type[Started | Committed | Ended]] = {
    "started": Started, "committed": Committed, "ended": Ended}


def parse(message: dict[str, object]) -> Started | Committed | Ended | None:
    """The report in ``message``, or None for a line that is none of them (``ready``)."""
    kind = _KINDS.get(message.get("type"))
    return None if kind is None else kind.model_validate(message)
