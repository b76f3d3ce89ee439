"""Which process runs which run: one POSIX record lock per run, on one file of the state dir.

A process holds byte ``run_no`` of ``runs.lock`` while it runs (or writes to) that run, so a
second ``flowhost resume`` of the same run is refused instead of running its steps twice.
The operating system drops the locks of a process that dies, even by SIGKILL, so a crashed
run is free to resume at once. Record locks belong to the process and vanish when any of
its descriptors of the file is closed, hence one shared descriptor per file per process.
Where ``fcntl`` is missing (Windows), locking is skipped.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_guard = threading.Lock()
_files: dict[Path, RunLocks] = {}


class RunLocks:
    """The run locks of one state dir, as seen from this process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._held: set[int] = set()

    @classmethod
    def of(cls, state_dir: Path) -> RunLocks:
        path = (state_dir / "runs.lock").resolve()
        with _guard:
            locks = _files.get(path)
            if locks is None:
                locks = _files[path] = cls(path)
            return locks

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def acquire(self, run_no: int) -> bool:
        """Take the run's lock; False when another process has it, or this one already
        does (ownership is not re-entrant: one process never executes a run twice)."""
        if run_no in self._held:
            return False
        if fcntl is None:
            self._held.add(run_no)
            return True
        try:
            fcntl.lockf(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_no)
        except OSError:
            return False
        self._held.add(run_no)
        return True

    def release(self, run_no: int) -> None:
        if run_no not in self._held:
            return
        self._held.discard(run_no)
        if fcntl is not None:
            fcntl.lockf(self._descriptor(), fcntl.LOCK_UN, 1, run_no)

    def held(self, run_no: int) -> bool:
        """Whether this process holds the run."""
        return run_no in self._held

    def busy(self, run_no: int) -> bool:
        """Whether another process holds the run now."""
        if fcntl is None or run_no in self._held:
            return False
        try:
            fcntl.lockf(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, run_no)
        except OSError:
            return True
        fcntl.lockf(self._descriptor(), fcntl.LOCK_UN, 1, run_no)
        return False
