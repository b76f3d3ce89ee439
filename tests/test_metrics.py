"""Events -> samples: each metric of CONTRACT §9 and the additions, read back with
``registry.get_sample_value``; restoring without counting; bounded labels; and one real run
through the Python API with the observer attached."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import flowhost
from flowhost.events import (
    AttemptFailed,
    AttemptStarted,
    BreakerChanged,
    CacheHit,
    CacheMiss,
    CacheRejected,
    Event,
    FallbackChosen,
    InterventionRequested,
    InterventionResolved,
    RetryScheduled,
    RunFinished,
    RunStarted,
    StepFinished,
)
from flowhost.metrics import Families, Metrics, MetricsObserver

PROMTOOL = shutil.which("promtool")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def observer(clock: Clock | None = None, **options: Any) -> MetricsObserver:
    return MetricsObserver(Families(), clock=clock or Clock(), **options)


def feed(obs: MetricsObserver, events: Iterable[Event]) -> None:
    for event in events:
        obs(event)


def value(obs: MetricsObserver, name: str, **labels: str) -> float | None:
    return obs.families.registry.get_sample_value(name, labels)


def started(run: str = "r1", workflow: str = "wf", ts: float = 100.0) -> RunStarted:
    return RunStarted(run_id=run, workflow_id=workflow, description="", total_steps=1,
                      steps=(), ts=ts)


def finished(run: str = "r1", status: str = "success", ts: float = 110.0,
             workflow: str = "wf") -> RunFinished:
    return RunFinished(run_id=run, status=status, duration_s=1.0,  # type: ignore[arg-type]
                       workflow_id=workflow, ts=ts)


def attempt(step: str, plugin: str, number: int = 1, run: str = "r1",
            transport: str = "local") -> AttemptStarted:
    return AttemptStarted(run_id=run, step_id=step, plugin=plugin, attempt=number,
                          transport=transport)  # type: ignore[arg-type]


def failed(step: str, plugin: str, kind: str = "transient", run: str = "r1",
           message: str = "boom") -> AttemptFailed:
    return AttemptFailed(run_id=run, step_id=step, plugin=plugin, attempt=1, error_type="E",
                         error_kind=kind, message=message, hint=None,  # type: ignore[arg-type]
                         duration_s=0.1)


def step_done(step: str, plugin: str, status: str = "success", duration: float = 0.2,
              run: str = "r1", used: str | None = None) -> StepFinished:
    return StepFinished(run_id=run, step_id=step, plugin=plugin, used_plugin=used or plugin,
                        status=status, attempts=1, duration_s=duration)  # type: ignore[arg-type]


def test_a_step_with_a_retry_and_a_fallback() -> None:
    obs = observer()
    feed(obs, [
        started(),
        CacheMiss(run_id="r1", step_id="a", plugin="redis"),
        attempt("a", "redis"), failed("a", "redis"),
        RetryScheduled(run_id="r1", step_id="a", plugin="redis", next_attempt=2, delay_s=0.1),
        attempt("a", "redis", 2), failed("a", "redis", kind="permanent"),
        FallbackChosen(run_id="r1", step_id="a", plugin="redis", fallback="memory", reason="x"),
        attempt("a", "memory", 3),
        step_done("a", "redis", duration=0.3, used="memory"),
        finished(),
    ])
    assert value(obs, "flowhost_steps_total", plugin="redis", status="success") == 1
    assert value(obs, "flowhost_step_duration_seconds_count", plugin="redis",
                 status="success") == 1
    assert value(obs, "flowhost_step_duration_seconds_sum", plugin="redis",
                 status="success") == pytest.approx(0.3)
    assert value(obs, "flowhost_step_duration_seconds_bucket", plugin="redis",
                 status="success", le="0.25") == 0
    assert value(obs, "flowhost_step_duration_seconds_bucket", plugin="redis",
                 status="success", le="0.5") == 1
    for outcome, plugin in (("transient", "redis"), ("permanent", "redis"),
                            ("success", "memory")):
        assert value(obs, "flowhost_step_attempts_total", plugin=plugin, transport="local",
                     outcome=outcome) == 1
    assert value(obs, "flowhost_retries_total", plugin="redis") == 1
    assert value(obs, "flowhost_fallbacks_total", plugin="redis", fallback="memory") == 1
    assert value(obs, "flowhost_cache_misses_total", plugin="redis") == 1
    assert value(obs, "flowhost_runs_total", workflow="wf", status="success") == 1
    assert value(obs, "flowhost_run_duration_seconds_sum", workflow="wf",
                 status="success") == pytest.approx(10.0)  # first start to the end
    assert value(obs, "flowhost_runs_active") == 0
    assert obs.live_runs == 0  # nothing kept about a run that ended


def test_statuses_cache_and_what_ends_a_run() -> None:
    obs = observer()
    feed(obs, [
        started(),
        CacheHit(run_id="r1", step_id="a", plugin="noop"),
        step_done("a", "noop"),
        CacheRejected(run_id="r1", step_id="b", plugin="noop", reason="gone"),
        attempt("b", "noop"), failed("b", "noop", kind="validation"),
        step_done("b", "noop", status="failed"),
        step_done("c", "noop", status="skipped", duration=0.0),
        attempt("d", "slow"), step_done("d", "slow", status="cancelled"),
    ])
    assert value(obs, "flowhost_runs_active") == 1
    feed(obs, [finished(status="failed")])
    assert value(obs, "flowhost_cache_hits_total", plugin="noop") == 1
    assert value(obs, "flowhost_cache_rejected_total", plugin="noop") == 1
    for status in ("success", "failed", "skipped"):
        assert value(obs, "flowhost_steps_total", plugin="noop", status=status) == 1
    assert value(obs, "flowhost_steps_total", plugin="slow", status="cancelled") == 1
    assert value(obs, "flowhost_step_attempts_total", plugin="noop", transport="local",
                 outcome="validation") == 1
    assert value(obs, "flowhost_step_attempts_total", plugin="slow", transport="local",
                 outcome="cancelled") == 1
    assert value(obs, "flowhost_runs_total", workflow="wf", status="failed") == 1
    assert value(obs, "flowhost_runs_active") == 0


def test_waiting_and_interrupted_runs_are_not_counted_until_they_end() -> None:
    obs = observer()
    feed(obs, [started("r1"), finished("r1", status="waiting"),
               started("r2"), finished("r2", status="interrupted")])
    assert value(obs, "flowhost_runs_waiting") == 1
    assert value(obs, "flowhost_runs_active") == 0
    assert value(obs, "flowhost_runs_total", workflow="wf", status="waiting") is None
    feed(obs, [started("r1", ts=500.0), finished("r1", ts=600.0)])  # resumed, then done
    assert value(obs, "flowhost_runs_waiting") == 0
    assert value(obs, "flowhost_run_duration_seconds_sum", workflow="wf",
                 status="success") == pytest.approx(500.0)  # from its first start


def test_a_question_to_a_person_and_its_answer() -> None:
    clock = Clock(1000.0)
    obs = observer(clock)
    asked = InterventionRequested(run_id="r1", step_id="a", plugin="deploy", error="no",
                                  error_type="E", hint=None, attempts=1, ts=900.0)
    feed(obs, [started(), attempt("a", "deploy"), failed("a", "deploy", kind="intervention"),
               asked, finished(status="waiting")])
    assert value(obs, "flowhost_interventions_waiting", plugin="deploy") == 1
    assert value(obs, "flowhost_intervention_oldest_wait_seconds") == pytest.approx(100.0)
    assert value(obs, "flowhost_runs_waiting") == 1
    feed(obs, [InterventionResolved(run_id="r1", step_id="a", action="skip", by="ann",
                                    plugin="deploy", ts=960.0),
               started(ts=961.0),
               step_done("a", "deploy", status="skipped"), finished(ts=970.0)])
    assert value(obs, "flowhost_manual_interventions_total", plugin="deploy",
                 action="skip") == 1
    assert value(obs, "flowhost_intervention_wait_seconds_sum",
                 plugin="deploy") == pytest.approx(60.0)
    assert value(obs, "flowhost_interventions_waiting", plugin="deploy") == 0
    assert value(obs, "flowhost_intervention_oldest_wait_seconds") == 0
    assert value(obs, "flowhost_runs_waiting") == 0


def test_breakers_are_counted_per_live_run() -> None:
    obs = observer()

    def breaker(run: str, state: str) -> BreakerChanged:
        return BreakerChanged(run_id=run, plugin="redis", state=state,  # type: ignore[arg-type]
                              failures=5)

    feed(obs, [started("r1"), started("r2"), breaker("r1", "open"), breaker("r2", "open"),
               breaker("r1", "half-open")])
    assert value(obs, "flowhost_breaker_open", plugin="redis") == 2
    feed(obs, [breaker("r1", "closed")])
    assert value(obs, "flowhost_breaker_open", plugin="redis") == 1
    feed(obs, [finished("r2", status="failed")])  # its breakers end with its process
    assert value(obs, "flowhost_breaker_open", plugin="redis") == 0
    assert value(obs, "flowhost_breaker_transitions_total", plugin="redis",
                 state="open") == 2


def test_remote_plugins_count_as_grpc_and_say_whether_their_server_answers() -> None:
    obs = observer()
    url = "grpc://127.0.0.1:50070/cache"
    down = f"remote plugin {url}: UNAVAILABLE: failed to connect to all addresses"
    feed(obs, [started(), attempt("a", url, transport="grpc"),
               failed("a", url, message=down)])
    assert value(obs, "flowhost_remote_plugin_up", plugin=url) == 0
    feed(obs, [attempt("a", url, 2, transport="grpc"), step_done("a", url)])
    assert value(obs, "flowhost_remote_plugin_up", plugin=url) == 1
    assert value(obs, "flowhost_step_attempts_total", plugin=url, transport="grpc",
                 outcome="transient") == 1
    assert value(obs, "flowhost_step_attempts_total", plugin=url, transport="grpc",
                 outcome="success") == 1
    feed(obs, [attempt("b", url, transport="grpc"),
               failed("b", url, kind="permanent", message="the plugin's own error")])
    assert value(obs, "flowhost_remote_plugin_up", plugin=url) == 1  # it answered


def test_restore_rebuilds_the_gauges_and_counts_nothing() -> None:
    obs = observer()
    history: list[Event] = [
        started(), attempt("a", "p"), failed("a", "p", kind="intervention"),
        InterventionRequested(run_id="r1", step_id="a", plugin="p", error="e",
                              error_type="E", hint=None, attempts=1, ts=950.0),
        finished(status="waiting"), started("r2"), attempt("x", "p", run="r2")]
    obs.restore(history)
    assert value(obs, "flowhost_step_attempts_total", plugin="p", transport="local",
                 outcome="intervention") is None
    assert value(obs, "flowhost_runs_waiting") == 1
    assert value(obs, "flowhost_runs_active") == 1
    assert value(obs, "flowhost_interventions_waiting", plugin="p") == 1
    # what comes next is counted, with what the past says (when it was asked, the attempt)
    feed(obs, [InterventionResolved(run_id="r1", step_id="a", action="retry", plugin="p",
                                    ts=1000.0),
               step_done("x", "p", run="r2")])
    assert value(obs, "flowhost_intervention_wait_seconds_sum", plugin="p") == 50.0
    assert value(obs, "flowhost_step_attempts_total", plugin="p", transport="local",
                 outcome="success") == 1


def test_labels_stay_bounded_and_run_ids_are_exemplars_only() -> None:
    obs = observer(max_values=3)
    for number in range(10):
        run = f"run-{number}"
        feed(obs, [started(run, workflow=f"wf-{number}"), attempt("a", "noop", run=run),
                   step_done("a", "noop", run=run), finished(run, workflow=f"wf-{number}")])
    assert value(obs, "flowhost_runs_total", workflow="_other", status="success") == 7
    assert value(obs, "flowhost_runs_total", workflow="wf-0", status="success") == 1
    text = generate_latest(obs.families.registry).decode()
    assert "run-" not in text  # no run id in the classic text at all
    open_text = openmetrics_latest(obs.families.registry).decode()
    assert '# {run_id="run-9"}' in open_text  # the latest one, as the bucket's exemplar
    families = {f.name for f in text_string_to_metric_families(open_text)}
    assert {"flowhost_step_duration_seconds", "flowhost_steps", "flowhost_runs"} <= families
    before = len(text.splitlines())
    for number in range(10, 200):  # more runs of the same workflows: no new series
        run = f"run-{number}"
        feed(obs, [started(run, workflow="wf-1"), step_done("a", "noop", run=run),
                   finished(run, workflow="wf-1")])
    assert len(generate_latest(obs.families.registry).decode().splitlines()) == before


def test_every_contract_metric_is_exported_with_its_type() -> None:
    registry = Families().registry
    types = {metric.name: metric.type for metric in registry.collect()}
    expected = {
        "flowhost_step_duration_seconds": "histogram", "flowhost_steps": "counter",
        "flowhost_step_attempts": "counter", "flowhost_retries": "counter",
        "flowhost_fallbacks": "counter", "flowhost_manual_interventions": "counter",
        "flowhost_cache_hits": "counter", "flowhost_cache_misses": "counter",
        "flowhost_runs": "counter", "flowhost_run_duration_seconds": "histogram",
        "flowhost_runs_active": "gauge", "flowhost_runs_waiting": "gauge"}
    for name, kind in expected.items():
        assert types.get(name) == kind, name


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition() -> None:
    obs = observer()
    feed(obs, [started(), attempt("a", "noop"), failed("a", "noop"), step_done("a", "noop"),
               InterventionRequested(run_id="r1", step_id="b", plugin="p", error="e",
                                     error_type="E", hint=None, attempts=1, ts=990.0),
               finished(status="waiting")])
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "metrics"],
                             input=generate_latest(obs.families.registry), capture_output=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


RECOVERING = """
workflow_id: recovering
steps:
  - id: flaky
    plugin: flaky
    inputs: {counter_file: "COUNTERS/calls.txt", fail_times: 1}
    retry: {max_attempts: 3, initial_delay: 0.01, jitter: false}
  - id: sub
    plugin: flaky
    inputs: {counter_file: "COUNTERS/other.txt", fail_times: 5, kind: permanent}
    fallback: [{plugin: alternative, inputs: {note: fine}}]
    manual: false
"""


def test_a_real_run_through_the_python_api(tmp_path: Path) -> None:
    metrics = Metrics()
    spec = RECOVERING.replace("COUNTERS", str(tmp_path))  # the plugin opens it as given
    result = flowhost.run_workflow(spec, spec_name="recovering.yaml", workdir=tmp_path,
                                   observers=[metrics.observer])
    assert result.status == "success"
    registry = metrics.registry
    assert registry.get_sample_value("flowhost_retries_total", {"plugin": "flaky"}) == 1
    assert registry.get_sample_value("flowhost_fallbacks_total",
                                     {"plugin": "flaky", "fallback": "alternative"}) == 1
    assert registry.get_sample_value("flowhost_steps_total",
                                     {"plugin": "flaky", "status": "success"}) == 2
    assert registry.get_sample_value(
        "flowhost_step_attempts_total",
        {"plugin": "alternative", "transport": "local", "outcome": "success"}) == 1
    assert registry.get_sample_value(
        "flowhost_runs_total", {"workflow": "recovering", "status": "success"}) == 1
    metrics.close()
