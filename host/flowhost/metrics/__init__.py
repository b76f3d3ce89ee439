"""Prometheus metrics (CONTRACT §9), made from committed events.

- ``Families``: every metric, in a private ``CollectorRegistry``;
- ``MetricsObserver``: events -> samples, an observer like any other;
- ``Metrics``: the registry, its observer, served and/or pushed, for the runs of one
  process (``flowhost run --metrics-listen/--pushgateway``, or a program's own runs);
- ``MetricsServer``: ``/metrics``, ``/healthz``, ``/readyz`` on a ``HOST:PORT``;
- ``JournalFeed`` (``flowhost.metrics.feed``): the daemon's observer, fed from the journal
  of every run it supervises.

Importing this package imports ``prometheus_client``; a run that asks for no metrics never
does.
"""

from flowhost.metrics.endpoint import MetricsServer
from flowhost.metrics.families import Families
from flowhost.metrics.observer import MetricsObserver
from flowhost.metrics.process import Metrics
from flowhost.metrics.push import check_gateway, push

__all__ = ["Families", "Metrics", "MetricsObserver", "MetricsServer", "check_gateway", "push"]
