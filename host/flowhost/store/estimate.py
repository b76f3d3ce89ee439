"""How long a run should take, from the past durations of its plugins.

Each step is expected to take its plugin's median duration; the run takes the longer of its
critical path and its total work spread over ``max_parallel`` slots. A step still to run
whose plugin has no history yet: no estimate (a guess from other plugins can be off by
orders of magnitude, and a wrong estimate is worse than none).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping

from flowhost.plan import Plan


def estimate(plan: Plan, durations: Mapping[str, list[float]], *, max_parallel: int,
             done: Collection[str] = ()) -> float | None:
    medians = {plugin: statistics.median(values) for plugin, values in durations.items()
               if values}
    finish: dict[str, float] = {}
    work = 0.0
    for level in plan.levels:
        for step_id in level:
            planned = plan.steps[step_id]
            if step_id in done:
                own = 0.0
            elif (known := medians.get(planned.invoker.name)) is not None:
                own = known
            else:
                return None
            work += own
            finish[step_id] = own + max((finish.get(dep, 0.0) for dep in planned.deps),
                                        default=0.0)
    if not finish:
        return None
    return max(*finish.values(), work / max(max_parallel, 1))
