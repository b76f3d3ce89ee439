"""The metrics of the runs one process executes (``flowhost run``, ``flowhost resume``, or a
program using the Python API): one registry and its observer, served on
``--metrics-listen`` while the runs go on and/or pushed to ``--pushgateway`` when one ends.

    metrics = Metrics(listen="127.0.0.1:9464")        # bound now: UserInputError if not
    result = flowhost.run_workflow("wf.yaml", observers=[metrics.observer])
    metrics.close()
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from flowhost.metrics.endpoint import MetricsServer
from flowhost.metrics.families import Families
from flowhost.metrics.observer import MetricsObserver
from flowhost.metrics.push import check_gateway, push
from flowhost.problems import shorten


class Metrics:
    def __init__(self, *, listen: str | None = None, pushgateway: str | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        # Everything that can be wrong with the flags is found here, before a run starts.
        self.gateway = check_gateway(pushgateway) if pushgateway else None
        self.families = Families(registry)
        self.registry = self.families.registry
        self.observer = MetricsObserver(self.families)
        self.server = MetricsServer(listen, self.registry).start() if listen else None

    def pushed(self, workflow: str, report: Callable[[str], None]) -> bool:
        """Push to the gateway, if there is one; a failure is reported once, through
        ``report``, and the caller goes on as it would have (False)."""
        if self.gateway is None:
            return True
        why = push(self.gateway, self.registry, workflow)
        if why is not None:
            report(f"could not push the metrics to the Pushgateway at {shorten(self.gateway)}: "
                   f"{why}; "
                   "the run's own result stands")
            return False
        return True

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
