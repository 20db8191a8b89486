"""The alert rules and the dashboard, checked as files: promtool's syntax check and unit tests
(tests/charts/alerts_test.yaml fires and does not fire each alert), and the dashboard's shape."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.charts.prometheus import (
    ALERTS,
    ALERTS_TEST,
    alert_rules,
    binary,
    panel_queries,
    panels,
    without_thresholds,
)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = binary("promtool")
    if found is None:
        pytest.skip("no promtool: run `make prometheus` (or `make test`), or set PROMTOOL_BIN")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_unit_tests_fire_and_spare_each_alert(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    # every alert has a test that expects it to fire
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_a_broken_unit_test_fails(promtool: str, tmp_path: Path) -> None:
    """promtool really compares: the same tests expecting another severity fail."""
    broken = ALERTS_TEST.read_text().replace("severity: critical", "severity: page")
    broken = broken.replace("../../charts/marconi/files/alerts.yaml", str(ALERTS))
    assert broken.count("severity: page") >= 3 and str(ALERTS) in broken
    path = tmp_path / "alerts_test.yaml"
    path.write_text(broken)
    done = run(promtool, "test", "rules", str(path))
    assert done.returncode != 0
    assert "MarconiCatalogWatchDown" in done.stdout + done.stderr


def test_every_alert_can_be_acted_on() -> None:
    rules = alert_rules()
    readme = (ALERTS.parents[3] / "README.md").read_text()
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        anchor = rule["annotations"]["runbook"].removeprefix("README.md#")
        assert anchor == rule["alert"].lower()
        assert f"#### {rule['alert']}" in readme, f"no runbook for {rule['alert']}"


def test_the_dashboard_uses_its_datasource_variable_and_has_no_overlapping_panels() -> None:
    cells: set[tuple[int, int]] = set()
    titles = []
    for panel in panels():
        titles.append(panel["title"])
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        box = panel["gridPos"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert box["x"] + box["w"] <= 24
    assert len(titles) == len(set(titles))


def test_no_query_is_labelled_by_queue_or_project() -> None:
    per_queue = re.compile(r"\b(queue|project)\b")
    for title, expr in panel_queries():
        assert not per_queue.search(expr), title
    for rule in alert_rules():
        assert not per_queue.search(rule["expr"]), rule["alert"]


def test_thresholds_come_off_each_branch() -> None:
    assert without_thresholds("a == 0") == ["a"]
    assert without_thresholds('absent(a{b="c"})') == ['a{b="c"}']
    assert without_thresholds('max by (p) (a{p="x"}) > 300\nor max by (p) (b) > 30') == [
        'max by (p) (a{p="x"})',
        "max by (p) (b)",
    ]
    assert without_thresholds("sum(rate(x[5m])) / sum(rate(y[5m])) > 0.05") == [
        "sum(rate(x[5m])) / sum(rate(y[5m]))"
    ]
