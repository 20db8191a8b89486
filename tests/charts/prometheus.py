"""Prometheus's own tools for the chart's alerts and dashboard: promtool and a real server, built
once from the Go module proxy by the Makefile (`make prometheus`, which exports PROMTOOL_BIN and
PROMETHEUS_BIN), else found on PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.charts.chart import CHART

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
# What Grafana puts in place of its variables when it sends a panel's query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# An alert's threshold: the last comparison with a number, e.g. `> 0.05` or `== 0`.
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$")
ABSENT = re.compile(r"^absent\((.*)\)$")


def binary(name: str) -> str | None:
    """`$PROMTOOL_BIN` / `$PROMETHEUS_BIN`, else the tool on PATH."""
    path = os.environ.get(f"{name.upper()}_BIN") or shutil.which(name)
    return path if path and os.access(path, os.X_OK) else None


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def panels() -> Iterator[dict[str, Any]]:
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] != "row":
            yield panel


def panel_queries() -> list[tuple[str, str]]:
    """(panel title and query id, the query as Grafana sends it) for every panel's target."""
    found = []
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((f"{panel['title']} [{target['refId']}]", expr))
    return found


def without_thresholds(expr: str) -> list[str]:
    """The alert's expression with each threshold taken off (each `or` branch on its own; what
    `absent()` looks for, not its absence), so what it compares can be checked for data when
    nothing is wrong."""
    branches = [THRESHOLD.sub("", b).strip() for b in re.split(r"\n?\s*\bor\b\s", expr)]
    return [ABSENT.sub(r"\1", b) for b in branches]
