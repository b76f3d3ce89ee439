"""The proof against the real thing: a real Prometheus scrapes a real ``flowhost serve``
every second and evaluates ``deploy/prometheus/rules.yml``, a scenario touches every metric
(a success, a retry, a fallback with its breaker, a person's skip, cache hits and a rejected
one, a cancel, a remote gRPC plugin), and then every query of the Grafana dashboard and
every recording rule, sent through Prometheus' HTTP API as Grafana would send them, must
return data: finite samples, not only an expression that parses. The same for a one-off
``flowhost run --pushgateway`` through a real pushgateway."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from deploy_files import (
    CONTRACT_SERIES,
    RULES,
    Query,
    dashboard,
    for_prometheus,
    queries,
    recording_rules,
    variables,
)
from plugin_servers import Served, flowhost, start_server
from prometheus_server import (
    PROMETHEUS,
    PUSHGATEWAY,
    Prometheus,
    Scrape,
    Server,
    free_port,
    http_get,
    start_prometheus,
    start_pushgateway,
    wait_until,
)
from test_daemon_support import Daemon, start_daemon, submit, wait_for

from flowhost._proto import host_pb2 as pb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="Prometheus is not installed (Debian: "
                       "apt-get install prometheus; scripts/dev.py test installs it where "
                       "it can)"),
]
BOARD = dashboard()
QUERIES = queries(BOARD)
RECORDED = recording_rules()
TOUR = "metrics-tour"


def tour(folder: Path, remote: Served, phase: int, run: int, written: str) -> str:
    """One run that touches every metric: each step one thing of the ladder or the cache
    (``cached`` is a hit once ``phase`` was run, ``written`` once its folder was)."""
    return f"""
workflow_id: {TOUR}
breaker: {{failures: 2, reset_after: 60}}
steps:
  - id: ok
    plugin: echo
    inputs: {{text: hello}}
  - id: remote
    plugin: {remote.url("echo")}
    inputs: {{text: $ok.text}}
  - id: cached
    plugin: noop
    inputs: {{value: {phase}}}
  - id: written
    plugin: file-writer
    cache: true
    inputs: {{directory: "{folder / written}"}}
    validation:
      - files_exist: ["${{written.path}}"]
  - id: retried
    plugin: flaky
    inputs: {{counter_file: "{folder / f"flaky-{phase}-{run}.txt"}", fail_times: 1}}
    retry: {{max_attempts: 3, initial_delay: 0.05, jitter: false}}
  - id: substituted
    plugin: fail
    inputs: {{kind: transient}}
    retry: {{max_attempts: 2, initial_delay: 0.05, jitter: false}}
    fallback:
      - plugin: alternative
        inputs: {{note: instead}}
  - id: asks
    plugin: crash
    manual: {{hint: "a person decides"}}
"""


def gate(folder: Path, phase: int) -> str:
    return f"""
workflow_id: metrics-cancel
steps:
  - id: long
    plugin: gate
    inputs: {{started: "{folder / f"gate-{phase}.started"}", release: "{folder / "never"}",
              seconds: 60}}
"""


def answer_and_finish(stub: Any, run_id: str, seen_by: Prometheus | None = None,
                      timeout: float = 30) -> dict[str, Any]:
    """Wait for the question of step ``asks`` (the run parks ``waiting`` once nothing else
    of it runs; ``seen_by`` scrapes it so), skip it with outputs, and wait for the end."""
    wait_for(stub, run_id, ["waiting"], timeout=timeout)
    if seen_by is not None:
        wait_until("Prometheus sees a run waiting for a person", partial(
            scraped, seen_by, "flowhost_runs_waiting", 1), timeout)
    stub.ResolveIntervention(pb.ResolveInterventionRequest(
        run_id=run_id, step_id="asks", action="skip", outputs_json=b'{"never": "skipped"}',
        comment="metrics test"), timeout=30)
    return wait_for(stub, run_id, timeout=timeout)


def drive(stub: Any, folder: Path, remote: Served, phase: int, prometheus: Prometheus) -> None:
    """A phase: a run that is cancelled, two tours (the second finds the first's cached
    results, one of which fails its check because the test removed its file)."""
    cancelled = submit(stub, gate(folder, phase))
    written = f"written-{phase}"
    first = answer_and_finish(stub, submit(stub, tour(folder, remote, phase, 1, written)),
                              prometheus)
    assert first["status"] == "success", first
    (folder / written / "out.py").unlink()  # the cached result's check fails
    second = answer_and_finish(stub, submit(stub, tour(folder, remote, phase, 2, written)))
    assert second["status"] == "success", second
    cached = {step["id"]: step["cached"] for step in second["steps"]}
    assert cached["cached"] and not cached["written"], second["steps"]
    wait_until("the gate step runs", (folder / f"gate-{phase}.started").exists, 30)
    stub.CancelRun(pb.CancelRunRequest(run_id=cancelled, reason="metrics test"), timeout=30)
    assert wait_for(stub, cancelled)["status"] == "cancelled"


def scraped(prometheus: Prometheus, expr: str, at_least: float) -> bool:
    return any(float(s["value"][1]) >= at_least for s in prometheus.query(expr))


@dataclass
class Scenario:
    prometheus: Prometheus
    window: str  # $__rate_interval: since Prometheus started, so it sees every increase
    daemon: Daemon
    metrics_url: str


def stop_all(servers: list[Server | Served], daemon: Daemon | None) -> None:
    if daemon is not None:
        daemon.stop(signal.SIGTERM)
    for server in reversed(servers):
        server.stop()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    folder = tmp_path_factory.mktemp("prometheus")
    servers: list[Server | Served] = []
    daemon: Daemon | None = None
    try:
        remote = start_server("echo", log=folder / "plugin-server.log")
        servers.append(remote)
        metrics = f"127.0.0.1:{free_port()}"
        daemon = start_daemon(folder / "state", "--metrics-listen", metrics,
                              log=folder / "daemon.log", cwd=folder)
        metrics_url = f"http://{metrics}"
        prometheus = start_prometheus(folder / "prom", [Scrape("flowhost", [metrics])],
                                      [RULES])
        servers.append(prometheus)
        started = time.time()
        wait_until("Prometheus scrapes the daemon", prometheus.targets_up, 30, prometheus.log)
        stub = daemon.stub()
        # Each phase does the same things: a counter that appears only shows an increase to
        # rate() from its second scrape on, so the second phase makes every rate non-zero.
        for phase in (1, 2):
            drive(stub, folder, remote, phase, prometheus)
            wait_until(f"Prometheus sees phase {phase}", partial(
                scraped, prometheus, f'sum(flowhost_runs_total{{workflow="{TOUR}"}})',
                2 * phase), 30)
        window = f"{math.ceil(time.time() - started) + 5}s"
        yield Scenario(prometheus, window, daemon, metrics_url)
    finally:
        stop_all(servers, daemon)


def has_data(prometheus: Prometheus, expr: str, timeout: float = 15) -> list[dict[str, Any]]:
    """The finite samples of ``expr``, waiting for the rules' next evaluation if needed."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = prometheus.finite(expr)
        return bool(found)

    try:
        wait_until("data", check, timeout)
    except AssertionError:
        raise AssertionError(f"no finite data from {expr}: {prometheus.query(expr)}") from None
    return found


@pytest.mark.timeout(90)
@pytest.mark.parametrize("query", QUERIES, ids=[f"{q.panel}-{q.ref}" for q in QUERIES])
def test_every_dashboard_query_returns_data(scenario: Scenario, query: Query) -> None:
    expr = for_prometheus(query.expr, BOARD, scenario.window)
    samples = has_data(scenario.prometheus, expr)
    assert all("run_id" not in s["metric"] for s in samples)


@pytest.mark.parametrize("record", sorted(RECORDED))
def test_every_recording_rule_records_data(scenario: Scenario, record: str) -> None:
    has_data(scenario.prometheus, record)


def test_every_rule_loads_and_evaluates_without_error(scenario: Scenario) -> None:
    groups = scenario.prometheus.api("rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(RECORDED) <= set(loaded)
    for name, rule in loaded.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), (name, rule)
    alerts = {a["labels"]["alertname"] for a in scenario.prometheus.api("alerts")["alerts"]}
    assert "FlowhostDaemonDown" not in alerts and "FlowhostDaemonNotReady" not in alerts


@pytest.mark.parametrize(("expr", "value"), [
    (f'flowhost_runs_total{{workflow="{TOUR}", status="success"}}', 4),
    ('flowhost_runs_total{workflow="metrics-cancel", status="cancelled"}', 2),
    ('flowhost_steps_total{plugin="gate", status="cancelled"}', 2),
    ('flowhost_steps_total{plugin="crash", status="skipped"}', 4),
    ('flowhost_retries_total{plugin="flaky"}', 4),
    ('flowhost_fallbacks_total{plugin="fail", fallback="alternative"}', 4),
    ('flowhost_breaker_transitions_total{plugin="fail", state="open"}', 4),
    ('flowhost_manual_interventions_total{plugin="crash", action="skip"}', 4),
    ('flowhost_intervention_wait_seconds_count{plugin="crash"}', 4),
    ('flowhost_cache_hits_total{plugin="noop"}', 2),
    ('flowhost_cache_misses_total{plugin="noop"}', 2),
    ('flowhost_cache_rejected_total{plugin="file-writer"}', 2),
    ('sum(flowhost_step_attempts_total{transport="grpc", outcome="success"})', 4),
    ('flowhost_daemon_ready', 1),
    ('max_over_time(flowhost_runs_waiting[1h])', 1),
    ('max_over_time(flowhost_interventions_waiting{plugin="crash"}[1h])', 1),
    ('flowhost_runs_waiting + flowhost_runs_active + flowhost_runs_queued', 0),
    ('sum(flowhost_interventions_waiting)', 0),
    ('max_over_time(flowhost_intervention_oldest_wait_seconds[1h]) > bool 0', 1),
])
def test_the_scenario_is_counted_as_it_happened(scenario: Scenario, expr: str,
                                                value: float) -> None:
    """What Prometheus holds is what the scenario did: two phases, each with two tours
    (four runs) and one cancelled run."""
    [sample] = scenario.prometheus.query(expr)
    assert float(sample["value"][1]) == value, sample


@pytest.mark.parametrize("name", ["plugin", "workflow"])
def test_the_dashboard_variables_list_values(scenario: Scenario, name: str) -> None:
    """What Grafana asks for ``label_values(series, label)``: the label's values."""
    definition = variables(BOARD)[name]["definition"]
    series = definition.removeprefix("label_values(").split(",")[0]
    values = scenario.prometheus.api(f"label/{name}/values", **{"match[]": series})
    wanted = {"echo", "noop", "flaky", "fail", "crash"} if name == "plugin" else {TOUR}
    assert wanted <= set(values), values


def test_the_daemon_serves_health_and_readiness(scenario: Scenario) -> None:
    assert http_get(f"{scenario.metrics_url}/healthz")[0] == 200
    assert http_get(f"{scenario.metrics_url}/readyz")[0] == 200
    status, text = http_get(f"{scenario.metrics_url}/metrics")
    assert status == 200 and "flowhost_steps_total" in text
    assert "run_id" not in text.replace("# ", "")  # run ids only in OpenMetrics exemplars


# -- a one-off run pushes to a pushgateway ------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.skipif(PUSHGATEWAY is None, reason="the Prometheus pushgateway is not installed "
                    "(Debian: apt-get install prometheus-pushgateway)")
def test_a_one_off_run_pushes_its_metrics_to_a_pushgateway(tmp_path: Path) -> None:
    servers: list[Server | Served] = []
    try:
        remote = start_server("echo", log=tmp_path / "plugin-server.log")
        servers.append(remote)
        gateway = start_pushgateway(tmp_path / "gateway")
        servers.append(gateway)
        prometheus = start_prometheus(tmp_path / "prom", [
            Scrape("pushgateway", [f"127.0.0.1:{gateway.port}"], honor_labels=True)], [RULES])
        servers.append(prometheus)
        spec = tmp_path / "tour.yaml"
        for run in (1, 2):  # the second finds the first's result of `cached`, not `written`
            spec.write_text(tour(tmp_path, remote, 1, run, f"written-{run}"), encoding="utf-8")
            done = flowhost("run", str(spec), "--no-progress", "--on-manual", "skip",
                            "--pushgateway", gateway.url, cwd=tmp_path, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
        status, text = http_get(f"{gateway.url}/metrics")
        assert status == 200
        pushed = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                  if line.startswith("flowhost_")}
        assert pushed >= CONTRACT_SERIES, CONTRACT_SERIES - pushed
        # Prometheus scrapes the pushgateway: the pushed job and grouping key stay
        grouping = f'job="flowhost", workflow="{TOUR}"'
        wait_until("Prometheus scrapes the pushgateway", prometheus.targets_up, 30)
        for name in sorted(CONTRACT_SERIES - {"flowhost_run_duration_seconds_bucket",
                                              "flowhost_run_duration_seconds_sum",
                                              "flowhost_run_duration_seconds_count",
                                              "flowhost_runs_total"}):
            has_data(prometheus, f"{name}{{{grouping}}}")
        [runs] = has_data(prometheus, f'flowhost_runs_total{{{grouping}, status="success"}}')
        assert float(runs["value"][1]) == 1  # the second run's process pushed last
        has_data(prometheus, f'flowhost_run_duration_seconds_count{{{grouping}}}')
        hits = has_data(prometheus, f'flowhost_cache_hits_total{{{grouping}, plugin="noop"}}')
        assert float(hits[0]["value"][1]) == 1
        skips = has_data(prometheus, f'flowhost_manual_interventions_total{{{grouping}, '
                                     f'action="skip"}}')
        assert {s["metric"]["plugin"] for s in skips} == {"crash"}
        grpc = has_data(prometheus, f'flowhost_step_attempts_total{{{grouping}, '
                                    f'transport="grpc"}}')
        assert grpc
        has_data(prometheus, f'push_time_seconds{{{grouping}}}')
        [up] = has_data(prometheus, 'up{job="pushgateway"}')
        assert float(up["value"][1]) == 1
    finally:
        stop_all(servers, None)
