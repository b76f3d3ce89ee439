"""The results of finished runs, kept once read: a run that ended never changes (none is
resumed, nor written to again), so ``GetRun`` of one is its bytes, not another read and
fold of its whole journal. Least recently asked for go first, past a budget of bytes."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_BUDGET = 64 * 2**20


class FinishedResults:
    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0

    def get(self, run_id: str) -> bytes | None:
        data = self._kept.get(run_id)
        if data is not None:
            self._kept.move_to_end(run_id)
        return data

    def keep(self, run_id: str, data: bytes) -> None:
        """``data``: the result of run ``run_id``, which has finished."""
        if run_id in self._kept or len(data) > self.budget // 4:
            return  # (a result too big to keep would push out the others)
        self._kept[run_id] = data
        self._size += len(data)
        while self._size > self.budget:
            _, dropped = self._kept.popitem(last=False)
            self._size -= len(dropped)
