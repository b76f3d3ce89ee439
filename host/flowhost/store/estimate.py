"""How long a run should take, from the past durations of its steps' plugins.

Each step is expected to take what its plugin took with the same inputs (as the spec wrote
them), or, without such a history, the plugin's median when its durations agree with each
other; the run takes the longer of its critical path and its total work spread over
``max_parallel`` slots. A step still to run without either — a new plugin, or one whose
durations vary too much for its inputs not to matter — means no estimate: a wrong estimate
is worse than none.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Collection, Mapping

from flowhost.plan import Plan, PlannedStep

_SPREAD = 3.0  # a plugin whose durations differ more than this much depends on its inputs


def inputs_key(planned: PlannedStep) -> str:
    """A short stable name of a step's inputs as its spec wrote them (references as text)."""
    text = json.dumps(planned.step.inputs, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def estimate(plan: Plan, durations: Mapping[str, list[float]], *, max_parallel: int,
             done: Collection[str] = (),
             similar: Mapping[str, list[float]] | None = None) -> float | None:
    """``durations``: each plugin's latest; ``similar``: each step's, with its inputs."""
    typical = {plugin: statistics.median(values) for plugin, values in durations.items()
               if values and agree(values)}
    same_inputs = {step_id: statistics.median(values)
                   for step_id, values in (similar or {}).items() if values}
    finish: dict[str, float] = {}
    work = 0.0
    for level in plan.levels:
        for step_id in level:
            planned = plan.steps[step_id]
            known = 0.0 if step_id in done else same_inputs.get(
                step_id, typical.get(planned.invoker.name))
            if known is None:
                return None
            own = known
            work += own
            finish[step_id] = own + max((finish.get(dep, 0.0) for dep in planned.deps),
                                        default=0.0)
    if not finish:
        return None
    return max(*finish.values(), work / max(max_parallel, 1))


def agree(values: list[float]) -> bool:
    """Whether a plugin's durations are alike enough for their median to stand for any
    call (more than 3 times apart: its inputs decide)."""
    low, high = min(values), max(values)
    return high <= max(low, 0.01) * _SPREAD  # (below 10 ms it is all the same to a person)
