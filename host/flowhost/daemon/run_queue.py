"""The supervisor's queue of accepted runs to execute, oldest submission first."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from flowhost.store import RunRecord


@dataclass
class RunQueue:
    """Runs to execute, oldest submission first."""

    heap: list[tuple[int, str]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def push(self, record: RunRecord) -> None:
        if record.run_id not in self.ids:
            self.ids.add(record.run_id)
            heapq.heappush(self.heap, (record.run_no, record.run_id))

    def pop(self) -> str:
        _, run_id = heapq.heappop(self.heap)
        self.ids.discard(run_id)
        return run_id

    def remove(self, run_id: str) -> bool:
        if run_id not in self.ids:
            return False
        self.ids.discard(run_id)
        self.heap = [entry for entry in self.heap if entry[1] != run_id]
        heapq.heapify(self.heap)
        return True

    def __len__(self) -> int:
        return len(self.heap)
