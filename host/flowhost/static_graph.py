"""The step graph of a spec: the steps each step reads from, the levels of steps that can
run together (what the engine schedules by), and the cycles that would leave steps never
able to start, each named step by step so that the user sees which reference to remove.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowhost.plan import PlannedStep
from flowhost.refs import CDict, CList, Compiled, Const, Ref, Template

if TYPE_CHECKING:
    from flowhost.static_references import ReferenceChecker


def ref_roots(compiled: Compiled, roots: dict[str, None]) -> None:
    """Add the root of each reference in ``compiled`` to ``roots`` (as ``iter_refs`` finds
    them, without its generators)."""
    if isinstance(compiled, Ref):
        roots[compiled.root] = None
    elif isinstance(compiled, CDict):
        for _, value in compiled.items:
            if type(value) is Ref:  # the common case, without one more call
                roots[value.root] = None
            elif not isinstance(value, Const):
                ref_roots(value, roots)
    elif isinstance(compiled, CList):
        for item in compiled.items:
            if not isinstance(item, Const):
                ref_roots(item, roots)
    elif isinstance(compiled, Template):
        for part in compiled.parts:
            if isinstance(part, Ref):
                roots[part.root] = None


def step_levels(planned: dict[str, PlannedStep], checker: ReferenceChecker) -> list[list[str]]:
    """Kahn's algorithm: the groups of steps that can run together, or the cycles."""
    indegree: dict[str, int] = {}
    for sid, ps in planned.items():
        degree = 0
        for dep in ps.deps:
            if dep in planned:
                degree += 1
                planned[dep].dependents.append(sid)
        indegree[sid] = degree
    current = [sid for sid, degree in indegree.items() if degree == 0]
    levels: list[list[str]] = []
    done = 0
    while current:
        levels.append(current)
        done += len(current)
        following = []
        for sid in current:
            for dependent in planned[sid].dependents:
                indegree[dependent] -= 1
                if indegree[dependent] == 0:
                    planned[dependent].level = len(levels)
                    following.append(dependent)
        current = following
    if done < len(planned):
        stuck = {sid for sid, degree in indegree.items() if degree > 0}
        positions = {step.id: i for i, step in enumerate(checker.workflow.steps)}
        for cycle in _cycles(planned, stuck):
            first = cycle[0]
            checker.add("dependency cycle: " + " → ".join([*cycle, first]),
                        ("steps", positions[first]), first, None,
                        "remove one of these references or `needs`")
    return levels


def _cycles(planned: dict[str, PlannedStep], stuck: set[str]) -> list[list[str]]:
    cycles: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(stuck, key=lambda s: planned[s].index):
        if start in seen:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        node = start
        # Follow a stuck dependency until a node repeats: that loop is a cycle.
        while node not in position and node not in seen:
            position[node] = len(path)
            path.append(node)
            node = next(d for d in planned[node].deps if d in stuck)
        if node in position:
            cycles.append(path[position[node]:])
        seen.update(path)
    return cycles
