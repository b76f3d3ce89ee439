"""The step log: each step's checkpoint appended to a file of its run in the state dir
(``steplog/<run_no>-<first id>``), and moved into ``state.db`` in batches.

Why: a SQLite commit per step costs most of what a fast step costs (eight ``fcntl`` locks
and the WAL's page writes); an append to a file costs one ``write``. Both outlive the
process (a crash, ``kill -9``) and neither outlives the machine losing power: the promise
the state database already makes with its WAL and ``synchronous=NORMAL``.

- The run's owner (the process holding its lock) appends each checkpoint as one group of
  lines in one ``write``: ``id TAB type TAB step TAB payload`` per event (an empty step:
  the run's own event), then ``#`` and the group's CRC-32. A group torn by a crash inside
  the write fails its CRC, and the log ends before it: that checkpoint was never made.
- The rows move into ``events`` with the batches (``flowhost.store.listener``); the file
  is removed after that commit, and the next rows start a new file.
- Readers (``runs show``, the daemon's watchers, metrics) read the log files first and the
  database second, and take each event once: rows only ever move from a file into the
  database, so what a file lost meanwhile is in the database by then.
- Whoever acquires the run next (``resume``, a daemon going on with it) first moves what
  a dead owner left into the database (``absorb``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

from flowhost.events import Event, StepFinished

DIRNAME = "steplog"
_MAGIC = b"flowhost step log 1 "  # + the run id: a file a restored backup left is not mixed in
_LINE = "%d\t%s\t%s\t%s\n"
Row = tuple[int, str, str | None, str]


class StepLog:
    """The owner's side: one file at a time, appended to, removed once its rows are in the
    database. Errors are ``OSError`` (or ``UnicodeError``: text that cannot be written)."""

    def __init__(self, directory: Path, run_no: int, run_id: str) -> None:
        self.directory = directory
        self._run_no = run_no
        self._header = _MAGIC + run_id.encode() + b"\n"
        self._fd: int | None = None
        self._path: Path | None = None

    @property
    def open(self) -> bool:
        return self._fd is not None

    def append(self, rows: Sequence[int | str | None]) -> None:
        """Append a group of rows (flat: id, type, step id or None, payload; four a row)."""
        if None in rows:
            rows = ["" if value is None else value for value in rows]
        data = ((_LINE * (len(rows) >> 2)) % tuple(rows)).encode()
        data += b"#%08x\n" % zlib.crc32(data)
        if self._fd is None:
            data = self._header + data
            self._start(int(rows[0]))  # type: ignore[arg-type]
        assert self._fd is not None
        view = memoryview(data)
        while view:  # (a regular file takes it in one go but on a full disk)
            written = os.write(self._fd, view)
            if written <= 0:
                raise OSError(f"{self._path}: nothing written")
            view = view[written:]

    def _start(self, first_id: int) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        path = self.directory / f"{self._run_no}-{first_id}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                           | os.O_CLOEXEC, 0o600)
        self._path = path

    def moved(self) -> None:
        """Its rows are in the database now: the file goes, the next rows start another."""
        path = self._path
        self.close()
        if path is not None:
            with contextlib.suppress(OSError):  # (a leftover is read again, and dropped)
                path.unlink()

    def close(self) -> None:
        """Stop writing; the file stays (what it holds is not in the database yet)."""
        fd, self._fd, self._path = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def files(directory: Path, run_no: int) -> list[Path]:
    """The run's log files, oldest first."""
    try:
        names = os.listdir(directory)
    except OSError:  # no log (yet), or not readable: the database alone
        return []
    prefix = f"{run_no}-"
    found = sorted((int(rest), name) for name in names if name.startswith(prefix)
                   and (rest := name[len(prefix):]).isdigit())
    return [directory / name for _, name in found]


def read(directory: Path, run_no: int, run_id: str,
         paths: Sequence[Path] | None = None) -> list[Row]:
    """The rows the run's log files (``paths``, else found) hold, in id order; [] when
    there are none."""
    rows: list[Row] = []
    header = _MAGIC + run_id.encode() + b"\n"
    for path in files(directory, run_no) if paths is None else paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # moved into the database meanwhile
            continue
        except OSError:
            continue  # (unreadable: what the database holds is what this reader gets)
        if data.startswith(header):
            rows += _groups(data, len(header))
    rows.sort(key=_row_id)
    return rows


def _row_id(row: Row) -> int:
    return row[0]


def _groups(data: bytes, start: int) -> list[Row]:
    """The rows of every whole group from ``start``, up to the first torn or damaged one."""
    rows: list[Row] = []
    at = start
    while True:
        trailer = data.find(b"\n#", at - 1)  # (JSON holds no raw newline: only trailers)
        end = data.find(b"\n", trailer + 2)
        if trailer < 0 or end < 0:
            return rows
        body = data[at:trailer + 1]
        if data[trailer + 2:end] != b"%08x" % zlib.crc32(body):
            return rows
        try:
            for line in body.split(b"\n")[:-1]:
                row_id, kind, step_id, payload = line.decode().split("\t", 3)
                rows.append((int(row_id), kind, step_id or None, payload))
        except ValueError:  # (a CRC that matches damage: no more of this file)
            return rows
        at = end + 1


def merged(stored: list[Row], logged: list[Row], start: int) -> list[Row]:
    """``stored`` (the database's rows from id ``start`` on, in order) and after them the
    logged rows that follow on without a gap."""
    expect = stored[-1][0] + 1 if stored else start
    out = stored
    for row in logged:
        if row[0] < expect:
            continue
        if row[0] != expect:
            break
        if out is stored:
            out = list(stored)
        out.append(row)
        expect += 1
    return out


def absorb(conn: sqlite3.Connection, directory: Path, run_no: int, run_id: str) -> list[Path]:
    """Put what the run's log files hold into ``events`` (in the caller's transaction);
    the files to remove once it commits."""
    found = files(directory, run_no)
    if not found:
        return []
    rows = read(directory, run_no, run_id, found)
    conn.executemany("INSERT OR IGNORE INTO events (id, type, step_id, payload) "
                     "VALUES (?, ?, ?, ?)", rows)
    return found


def remove(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def signature(directory: Path) -> int:
    """Changes whenever a log file is written, started or removed (the daemon's watchers
    ask it beside SQLite's ``data_version``)."""
    try:
        entries = os.scandir(directory)
    except OSError:
        return 0
    with entries:
        seen = []
        for entry in entries:
            with contextlib.suppress(OSError):
                seen.append((entry.name, entry.stat().st_size))
    return hash(tuple(sorted(seen)))


def describe(exc: OSError, directory: Path) -> str:
    """What went wrong writing the step log, and what to do, in a sentence."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{directory}: the disk is full ({why}). Free some space, or point "
                "--state-dir at another disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{directory}: the step log cannot be written ({why}). Make {directory.parent} "
                "and its files writable, or pass another --state-dir")
    return f"{directory}: cannot write the run's step log ({why})"


def succeeded(events: Sequence[Event]) -> int:
    """How many steps the events say succeeded (a run in flight, with a step log)."""
    return len({event.step_id for event in events
                if isinstance(event, StepFinished) and event.status == "success"})
