"""What the deploy files hold (no tests here): the Grafana dashboard's queries, as Grafana
would send them to Prometheus, and the Prometheus rules; shared by ``test_deploy.py`` and
the integration test against a real Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "flowhost.json"
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULES_TEST = PROMETHEUS / "rules_test.yml"

# CONTRACT §9: the binding names, as Prometheus sees their series.
CONTRACT_SERIES = frozenset({
    *(f"flowhost_step_duration_seconds{s}" for s in ("_bucket", "_sum", "_count")),
    *(f"flowhost_run_duration_seconds{s}" for s in ("_bucket", "_sum", "_count")),
    "flowhost_steps_total", "flowhost_step_attempts_total", "flowhost_retries_total",
    "flowhost_fallbacks_total", "flowhost_manual_interventions_total",
    "flowhost_cache_hits_total", "flowhost_cache_misses_total", "flowhost_runs_total",
    "flowhost_runs_active", "flowhost_runs_waiting",
})

# A name in a query: an exported series (flowhost_...) or a recorded one (level:flowhost_...:op).
_NAME = re.compile(r"(?<![\w:])(?:[A-Za-z_]\w*)?:?flowhost_[\w:]*")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.panel!r} {self.ref}: {self.expr}"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those folded inside collapsed rows too; rows themselves excluded."""
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(board: dict[str, Any]) -> list[Query]:
    return [Query(panel.get("title", ""), target.get("refId", ""), target["expr"])
            for panel in panels(board) for target in panel.get("targets", [])
            if target.get("expr")]


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])}


def for_prometheus(expr: str, board: dict[str, Any], rate_interval: str) -> str:
    """The query Grafana sends with every variable at "All": ``$__rate_interval`` becomes
    ``rate_interval`` and a multi-value variable its ``allValue`` (a regex)."""
    known = variables(board)

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name == "__rate_interval":
            return rate_interval
        if name not in known or not known[name].get("includeAll"):
            raise ValueError(f"{expr!r}: ${name} is not a variable with an All value")
        return str(known[name].get("allValue") or ".*")

    return _VARIABLE.sub(value, expr)


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def recording_rules() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def alerting_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def names_in(expr: str) -> set[str]:
    """The flowhost series names an expression reads, exported or recorded (with a colon)."""
    return set(_NAME.findall(expr))
