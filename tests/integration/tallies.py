"""Helpers of the kill-loop and shared-store tests (no tests here): specs of ``tally`` steps,
what the tally files say ran, what the store says finished, and a summary of the counts at
the end of the pytest session.

The ``tally`` plugin (``tests/fixture_plugins``) writes ``begin LABEL PID`` to ``tally.txt``
in the run's working directory whenever it runs and ``end LABEL PID`` when it is done.
A snapshot reads the store's finished steps *first* and the tally's length *after*: a
``begin`` past that length of a step the store already had finished is a finished step that
ran again, whenever the snapshot is taken (while processes run, or after they were killed).
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowhost.store import Store, read

TALLY = "tally.txt"
# The seed of the random choices of these tests (kill moments, sleeps): printed with their
# figures; FLOWHOST_KILL_SEED=N replays a session.
SEED = int(os.environ.get("FLOWHOST_KILL_SEED") or random.SystemRandom().randrange(1 << 31))


def tally_spec(workflow_id: str, rnd: random.Random, branches: int = 3, depth: int = 3,
               tail: int = 2, seconds: tuple[float, float] = (0.05, 0.25)) -> str:
    """A root, ``branches`` chains of ``depth`` steps, a join and a ``tail`` chain, each step
    a ``tally`` that sleeps (some in a thread) and adds 1 to the value it gets: the last
    step's value is the length of the longest path."""

    def step(step_id: str, value: str, needs: list[str] | None = None) -> str:
        sleep = round(rnd.uniform(*seconds), 3)
        sync = "true" if rnd.random() < 0.3 else "false"
        extra = f", needs: [{', '.join(needs)}]" if needs else ""
        return (f"  - {{id: {step_id}, plugin: tally, inputs: {{label: {step_id}, "
                f"seconds: {sleep}, value: {value}, sync: {sync}}}{extra}}}")

    lines = [f"workflow_id: {workflow_id}", "steps:", step("root", "0")]
    ends = []
    for branch in range(branches):
        previous = "root"
        for level in range(depth):
            step_id = f"b{branch}_{level}"
            lines.append(step(step_id, f"${previous}.value"))
            previous = step_id
        ends.append(previous)
    lines.append(step("join", f"${ends[0]}.value", ends[1:]))
    previous = "join"
    for n in range(tail):
        lines.append(step(f"t{n}", f"${previous}.value"))
        previous = f"t{n}"
    return "\n".join(lines) + "\n"


def last_value(depth: int = 3, tail: int = 2) -> int:
    """The value the last step of ``tally_spec`` returns: one per step of the longest path."""
    return 1 + depth + 1 + tail


def tally(folder: Path) -> list[tuple[str, str, int]]:
    """``(begin|end, label, pid)`` of every line of the folder's tally file, in order."""
    path = folder / TALLY
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(what, label, int(pid)) for what, label, pid in (line.split() for line in lines)]


def begun(folder: Path) -> Counter[str]:
    """How many times each step began."""
    return Counter(label for what, label, _ in tally(folder) if what == "begin")


@dataclass(frozen=True)
class Snapshot:
    """What the store had finished of a run, and how long its tally was, then."""

    run_id: str
    finished: frozenset[str]
    lines: int


def snapshot(state_dir: Path, run_id: str, folder: Path) -> Snapshot:
    """The store first, the tally after (see the module's docstring)."""
    with Store.open(state_dir, create=False) as store:
        finished = frozenset(read(store.events(store.run(run_id))).finished)
    return Snapshot(run_id, finished, len(tally(folder)))


def ran_again(snapshots: list[Snapshot], folder: Path) -> list[tuple[str, int]]:
    """``(step, line)`` for each ``begin`` of a step that a snapshot taken before that line
    had as finished: what must never happen."""
    lines = tally(folder)
    found = []
    for shot in snapshots:
        for index in range(shot.lines, len(lines)):
            what, label, _ = lines[index]
            if what == "begin" and label in shot.finished:
                found.append((label, index))
    return sorted(set(found))


def store_opens(state_dir: Path) -> None:
    """The state store opens, and SQLite finds nothing wrong in it."""
    with Store.open(state_dir, create=False) as store:
        assert store.runs(limit=1) is not None
    with sqlite3.connect(state_dir / "state.db", timeout=30) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def shown(folder: Path) -> str:
    """A file's text, for messages."""
    return folder.read_text("utf-8", "replace") if folder.exists() else f"({folder}: none)"


class Figures:
    """Counts that tests report: kept as user properties of their test (for junit XML) and
    printed together at the end of the session, whatever ``-q`` or ``-s`` says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.section("fault and kill figures")
            for line in self.lines:
                terminalreporter.write_line(line)


def report(request: pytest.FixtureRequest, title: str, **counts: Any) -> None:
    for key, value in counts.items():
        request.node.user_properties.append((key, value))
    manager = request.config.pluginmanager
    figures = manager.get_plugin("flowhost-figures")
    if figures is None:
        figures = Figures()
        manager.register(figures, "flowhost-figures")
    text = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items())
    figures.lines.append(f"{title}: {text}")
    print(f"{title}: {text}")
