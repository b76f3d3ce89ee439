"""Every metric flowhost exports, in one private registry: CONTRACT §9's names, types and
labels, and the additions (new names only, never a renamed one).

Labels are bounded by construction: plugin, workflow, status, transport, outcome, action,
fallback, state. A run id is never a label; it goes into the OpenMetrics exemplars of
``flowhost_step_duration_seconds``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flowhost import __version__

# A step takes from a millisecond (a cached result, a no-op) to an hour (a build, a
# deployment): the buckets cover both ends, denser where people notice.
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0, 3600.0)
# A run is a few steps or a whole pipeline, with people answering questions meanwhile.
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
               14400.0)
# A person answers in seconds at a terminal, or days later through the daemon.
WAIT_BUCKETS = (5.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
                86400.0, 604800.0)


class Families:
    """The metric objects of one registry (each process that exports has its own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        into = self.registry
        # -- CONTRACT §9 -------------------------------------------------------------
        self.step_duration = Histogram(
            "flowhost_step_duration_seconds",
            "Wall time of a step, all its attempts, backoff and fallbacks included, by the "
            "step's plugin and how it ended. Exemplars carry the run id.",
            ("plugin", "status"), buckets=STEP_BUCKETS, registry=into)
        self.steps = Counter(
            "flowhost_steps", "Steps finished, by the step's plugin and status (success, "
            "failed, skipped, cancelled).", ("plugin", "status"), registry=into)
        self.attempts = Counter(
            "flowhost_step_attempts", "Attempts of a plugin (primary or fallback), by "
            "transport (local, grpc) and outcome (success, transient, permanent, "
            "intervention, validation, timeout, cancelled).",
            ("plugin", "transport", "outcome"), registry=into)
        self.retries = Counter(
            "flowhost_retries", "Retries scheduled (level 1 of the recovery ladder).",
            ("plugin",), registry=into)
        self.fallbacks = Counter(
            "flowhost_fallbacks", "Fallbacks chosen (level 2): plugin is the one that "
            "failed, fallback the one tried instead.", ("plugin", "fallback"), registry=into)
        self.interventions = Counter(
            "flowhost_manual_interventions", "Answers to a question to a person (level 3), "
            "by action (retry, skip, abort, fail).", ("plugin", "action"), registry=into)
        self.cache_hits = Counter(
            "flowhost_cache_hits", "Cacheable steps whose result came from the cache.",
            ("plugin",), registry=into)
        self.cache_misses = Counter(
            "flowhost_cache_misses", "Cacheable steps that found no usable cached result.",
            ("plugin",), registry=into)
        self.runs = Counter(
            "flowhost_runs", "Runs that ended with a final status (success, failed, "
            "aborted, cancelled).", ("workflow", "status"), registry=into)
        self.run_duration = Histogram(
            "flowhost_run_duration_seconds", "Wall time of a run from its first start to "
            "its end (waits for people included).", ("workflow", "status"),
            buckets=RUN_BUCKETS, registry=into)
        self.runs_active = Gauge("flowhost_runs_active", "Runs executing now.",
                                 registry=into)
        self.runs_waiting = Gauge(
            "flowhost_runs_waiting", "Runs stopped to wait for a person's answer.",
            registry=into)
        # -- additions -----------------------------------------------------------------
        self.intervention_wait = Histogram(
            "flowhost_intervention_wait_seconds", "Time from a question to a person to its "
            "answer, observed when it is answered.", ("plugin",), buckets=WAIT_BUCKETS,
            registry=into)
        self.interventions_waiting = Gauge(
            "flowhost_interventions_waiting", "Questions to a person not answered yet.",
            ("plugin",), registry=into)
        self.oldest_question = Gauge(
            "flowhost_intervention_oldest_wait_seconds", "Age of the oldest question to a "
            "person not answered yet (0 when none).", registry=into)
        self.breaker_open = Gauge(
            "flowhost_breaker_open", "Live runs in which the plugin's circuit breaker is "
            "open or half-open now.", ("plugin",), registry=into)
        self.breaker_changes = Counter(
            "flowhost_breaker_transitions", "Circuit breaker state changes, by the state "
            "entered (open, half-open, closed).", ("plugin", "state"), registry=into)
        self.remote_up = Gauge(
            "flowhost_remote_plugin_up", "gRPC plugins: 1 when the last call reached the "
            "plugin's server, 0 when it could not connect.", ("plugin",), registry=into)
        self.cache_rejected = Counter(
            "flowhost_cache_rejected", "Cached results that no longer passed the step's "
            "checks (the step ran instead).", ("plugin",), registry=into)
        self.build_info = Gauge(
            "flowhost_build_info", "Always 1: the flowhost and Python versions.",
            ("version", "python"), registry=into)
        self.build_info.labels(__version__, platform.python_version()).set(1)

    def add_daemon(self, queued: Callable[[], float], ready: Callable[[], bool]) -> None:
        """The daemon's own gauges, read when scraped."""
        Gauge("flowhost_runs_queued", "Accepted runs waiting for a worker.",
              registry=self.registry).set_function(queued)
        Gauge("flowhost_daemon_ready", "1 when the daemon is ready (/readyz answers 200): "
              "not draining, its state store answering.",
              registry=self.registry).set_function(lambda: 1.0 if ready() else 0.0)

