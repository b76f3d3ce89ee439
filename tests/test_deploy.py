"""The deploy files, without servers: the Grafana dashboard imports as is and is written in
the names flowhost exports; the Prometheus rules pass promtool's checks and unit tests.
(tests/integration/test_prometheus.py runs them against a real Prometheus.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_files import (
    CONTRACT_SERIES,
    DASHBOARD,
    PROMETHEUS,
    RULES,
    RULES_TEST,
    alerting_rules,
    dashboard,
    for_prometheus,
    names_in,
    panels,
    queries,
    recording_rules,
    variables,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus; "
    "scripts/dev.py test installs it where it can)")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's unit ids that the panels may use.
UNITS = {"s", "ms", "percentunit", "short", "ops", "cpm", "opm", "bool", "bool_yes_no"}
RECORDED = re.compile(r"^[a-z_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")
RATE_CALL = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv|\w+_over_time)\(")
RANGE = re.compile(r"\[([^\]]*)\]")


def exported_series() -> set[str]:
    """Every series name that flowhost's metrics registry exports, built from the registry
    itself, so the dashboard and the rules fail here when a name drifts."""
    from flowhost.metrics import Families

    families = Families()
    families.add_daemon(lambda: 0.0, lambda: True)  # what only the daemon exports
    names: set[str] = set()
    for family in families.registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{end}" for end in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard()


def test_the_dashboard_imports_as_is_and_by_file_provisioning(board: dict[str, Any]) -> None:
    assert "__inputs" not in board and "__requires" not in board  # no import-time prompts
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])  # a fixed uid
    assert board.get("id") is None  # provisioning assigns the database id
    assert board["schemaVersion"] == 39 and board["title"]
    ids = [panel["id"] for panel in board["panels"]] + [
        panel["id"] for row in board["panels"] for panel in row.get("panels", [])]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_goes_to_the_datasource_variable(board: dict[str, Any]) -> None:
    [source] = [v for v in variables(board).values() if v["type"] == "datasource"]
    assert (source["name"], source["query"]) == ("datasource", "prometheus")
    assert source["current"] == {}  # the default data source of whoever imports it
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables(board).values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize(("name", "series", "label"), [
    ("plugin", "flowhost_steps_total", "plugin"),
    ("workflow", "flowhost_runs_total", "workflow"),
])
def test_plugin_and_workflow_variables(board: dict[str, Any], name: str, series: str,
                                       label: str) -> None:
    variable = variables(board)[name]
    query = f"label_values({series}, {label})"
    assert variable["type"] == "query"
    assert variable["definition"] == variable["query"]["query"] == query
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    used = [q for q in queries(board) if f'{label}=~"${name}"' in q.expr]
    assert used, f"no panel filters on ${name}"


def test_every_panel_has_a_unit(board: dict[str, Any]) -> None:
    for panel in panels(board):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in UNITS, f"{panel['title']!r}: unit {unit!r}"
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in UNITS, panel["title"]
        assert panel.get("description"), panel["title"]
        assert panel["targets"], panel["title"]


def test_every_rate_uses_the_rate_interval(board: dict[str, Any]) -> None:
    for query in queries(board):
        ranges = RANGE.findall(query.expr)
        assert all(r == "$__rate_interval" for r in ranges), query
        assert len(RATE_CALL.findall(query.expr)) == len(ranges), query
        # and Prometheus reads it once Grafana has put the variables in
        assert "$" not in for_prometheus(query.expr, board, "1m"), query


def test_the_dashboard_and_the_rules_read_only_names_flowhost_exports(
        board: dict[str, Any]) -> None:
    exported = exported_series()
    missing = CONTRACT_SERIES - exported
    assert not missing, f"CONTRACT §9 names the registry does not export: {missing}"
    recorded = recording_rules()
    earlier: set[str] = set()  # a rule may read what the rules before it record
    for record, expr in recorded.items():
        assert RECORDED.match(record), f"{record}: not level:metric:operations"
        unknown = names_in(expr) - exported - earlier
        assert not unknown, f"{record}: {unknown}"
        earlier.add(record)
    for alert, rule in alerting_rules().items():
        unknown = names_in(rule["expr"]) - exported - set(recorded)
        assert not unknown, f"{alert}: {unknown}"
    for query in queries(board):
        unknown = names_in(query.expr) - exported - set(recorded)
        assert not unknown, f"{query}: {unknown}"
        assert names_in(query.expr), f"{query}: reads no flowhost series"


def test_the_dashboard_shows_every_metric_of_the_contract(board: dict[str, Any]) -> None:
    read = {name for query in queries(board) for name in names_in(query.expr)}
    recorded = recording_rules()
    for record in reversed(recorded):  # what a recorded name reads, and what that reads
        if record in read:
            read |= names_in(recorded[record])
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in CONTRACT_SERIES}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in read}
    assert families <= shown, f"not on the dashboard: {families - shown}"


def test_every_alert_says_how_bad_what_and_why() -> None:
    alerts = alerting_rules()
    assert {"FlowhostStepSuccessRateLow", "FlowhostBreakerOpen", "FlowhostRunWaitingTooLong",
            "FlowhostDaemonNotReady", "FlowhostDaemonDown"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_each_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, set[bool]] = {}
    for group in yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]:
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for name in alerting_rules():
        assert cases.get(name) == {True, False}, f"{name}: {cases.get(name)}"
    tested = {case["expr"] for group in yaml.safe_load(RULES_TEST.read_text("utf-8"))["tests"]
              for case in group.get("promql_expr_test", [])}
    for record in recording_rules():
        assert any(record in expr for expr in tested), f"{record}: no promql_expr_test"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60, check=False)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "WARNING" not in done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_sample_prometheus_config_checks() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["flowhost"]["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert jobs["pushgateway"]["honor_labels"] is True


def test_the_grafana_provider_loads_the_dashboards_folder() -> None:
    config = yaml.safe_load((DASHBOARD.parent / "provisioning.yml").read_text("utf-8"))
    [provider] = config["providers"]
    assert config["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
