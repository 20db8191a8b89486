"""The dashboard's queries and the alerts' expressions against a real Prometheus scraping a real
`marconi dev` cluster (etcd, two SQLite partitions, the worker, the proxy) under a little load,
with one migration and one partition whose only node is down: each query returns data, so no
metric or label is misspelt. Then `marconi status` against the same cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.charts.prometheus import alert_rules, binary, panel_queries, without_thresholds
from tests.marconi.test_dev import Dev, gone, http
from tests.services import free_port, start_etcd

pytestmark = pytest.mark.slow

MIGRATING = 300  # messages in the queue that moves: at 100 msg/s, it copies for about 3 s
STEADY = ("a", "b", "c", "d")


@dataclass
class Scraped:
    url: str  # the proxy
    prometheus: str
    migration: str
    status: dict[str, Any]  # `marconi status --json` while the migration was in flight


def marconi(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marconi.cli", *argv, "--url", url, "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def marconi_json(url: str, *argv: str) -> Any:
    done = marconi(url, *argv, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        doc = json.loads(response.read())
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def load(url: str) -> None:
    """A little traffic: queues, posts, listings, a claim."""
    for name in STEADY:
        assert http("PUT", f"{url}/v2/queues/{name}")[0] in (201, 204)
        batch = {"messages": [{"body": {"n": n}, "ttl": 600} for n in range(10)]}
        assert http("POST", f"{url}/v2/queues/{name}/messages", batch)[0] == 201
        assert http("GET", f"{url}/v2/queues/{name}/messages?echo=true")[0] == 200
    assert http("POST", f"{url}/v2/queues/a/claims", {"ttl": 60, "grace": 60})[0] == 201


def fail(url: str) -> None:
    """Requests of the project pinned to the partition whose node is down: answered 5xx."""
    request = urllib.request.Request(
        f"{url}/v2/queues/lost",
        headers={"Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60", "X-Project-ID": "broken"},
        method="PUT",
    )
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
        failed.value.close()
        assert failed.value.code >= 500


def prometheus_config(targets: dict[str, list[str]]) -> str:
    jobs = [
        {
            "job_name": job,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": hosts}],
        }
        for job, hosts in targets.items()
    ]
    return yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "scrape_configs": jobs})


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    server = binary("prometheus")
    if server is None:
        pytest.skip("no prometheus: run `make prometheus` (or `make test`), or set PROMETHEUS_BIN")
    tmp = tmp_path_factory.mktemp("prometheus")
    etcd = start_etcd(tmp / "etcd")
    port, worker_port, prometheus_port, dead_port = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "MARCONI_WORKER_METRICS_PORT": str(worker_port),
        "MARCONI_WORKER_CENSUS_INTERVAL": "1",
        "MARCONI_WORKER_COPY_RATE": "100",
        "MARCONI_WORKER_BATCH": "20",
    }
    argv = [sys.executable, "-m", "marconi.cli", "dev", "--port", str(port)]
    argv += ["--partitions", "2", "--data", str(tmp / "data"), "--etcd", etcd.url]
    dev = Dev(argv, env=env)
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        url = dev.wait_for(r"endpoint\s+(http://\S+)").group(1)
        listed = marconi_json(url, "partitions", "list")["partitions"]
        nodes = [n.removeprefix("http://") for p in listed for n in p["nodes"]]
        load(url)
        moving = {"messages": [{"body": {"n": n}, "ttl": 600} for n in range(20)]}
        assert http("PUT", f"{url}/v2/queues/moving")[0] in (201, 204)
        for _ in range(MIGRATING // 20):
            assert http("POST", f"{url}/v2/queues/moving/messages", moving)[0] == 201
        # p3, added once every queue above is placed: one node, never started; the project
        # "broken" is pinned there.
        added = marconi(url, "partitions", "add", "p3", "--node", f"http://127.0.0.1:{dead_port}")
        assert added.returncode == 0, added.stderr
        assert marconi(url, "pins", "set", "broken", "p3").returncode == 0

        config = tmp / "prometheus.yml"
        targets = {
            "proxy": [f"127.0.0.1:{port}"],
            "node": nodes,
            "worker": [f"127.0.0.1:{worker_port}"],
        }
        config.write_text(prometheus_config(targets))
        log = (tmp / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [
                server,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()  # the child has its own copy
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"

        fail(url)
        where = marconi_json(url, "queues", "where", "demo", "moving")
        target = "p2" if where["partition"] == "p1" else "p1"
        migration = marconi_json(url, "migrate", "move", "demo", "moving", "--to", target)["id"]
        status = marconi_json(url, "status")
        done = marconi(url, "migrate", "status", migration, "--wait", "--wait-timeout", "60")
        assert done.returncode == 0, done.stdout + done.stderr
        load(url)  # traffic after the move too, so rates cover the whole window
        fail(url)
        yield Scraped(url, prometheus_url, migration, status)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        if dev.proc.poll() is None:
            dev.proc.send_signal(signal.SIGINT)
            try:
                dev.proc.wait(30)
            except subprocess.TimeoutExpired:
                dev.proc.kill()
                dev.proc.wait()
        dev.reader.join(5)
        if dev.proc.stdout is not None:
            dev.proc.stdout.close()
        for pid in dev.pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        etcd.stop()


def until_answered(prometheus: str, exprs: list[tuple[str, str]]) -> dict[str, str]:
    """Query each until it returns data (scrapes are 1 s apart; a rate needs two), for up to
    30 s in all; what is still empty then, by name."""
    empty = dict(exprs)
    deadline = time.monotonic() + 30
    while empty and time.monotonic() < deadline:
        for name, expr in list(empty.items()):
            if query(prometheus, expr):
                del empty[name]
        if empty:
            time.sleep(1)
    return {name: empty[name] for name in empty}


def test_every_dashboard_query_returns_data(scraped: Scraped) -> None:
    queries = panel_queries()
    assert len(queries) >= 20
    assert until_answered(scraped.prometheus, queries) == {}


def test_every_alert_expression_finds_its_series(scraped: Scraped) -> None:
    exprs = [
        (f"{rule['alert']} [{i}]", branch)
        for rule in alert_rules()
        for i, branch in enumerate(without_thresholds(rule["expr"]))
    ]
    assert until_answered(scraped.prometheus, exprs) == {}


def test_the_partition_without_a_node_fires_its_alert_and_the_others_do_not(
    scraped: Scraped,
) -> None:
    [rule] = [r for r in alert_rules() if r["alert"] == "MarconiPartitionUnavailable"]
    assert until_answered(scraped.prometheus, [("p3", rule["expr"])]) == {}
    firing = query(scraped.prometheus, rule["expr"])
    assert [r["metric"]["partition"] for r in firing] == ["p3"]


def test_the_census_and_the_migration_show_in_the_metrics(scraped: Scraped) -> None:
    queues = "max by (partition) (marconi_partition_queues)"
    assert until_answered(scraped.prometheus, [("queues", queues)]) == {}
    counted = {
        r["metric"]["partition"]: float(r["value"][1]) for r in query(scraped.prometheus, queues)
    }
    assert sum(counted.values()) == len(STEADY) + 2 and counted["p3"] == 1
    copied = query(scraped.prometheus, "max(marconi_migration_messages_copied_total)")
    assert float(copied[0]["value"][1]) >= MIGRATING
    switched = 'max(marconi_migration_freeze_seconds_count{outcome="switched"})'
    assert float(query(scraped.prometheus, switched)[0]["value"][1]) >= 1


def test_status_showed_each_partition_its_nodes_and_the_migration_in_flight(
    scraped: Scraped,
) -> None:
    doc = scraped.status
    assert doc["catalog"]["state"] == "live"
    by_name = {p["name"]: p for p in doc["partitions"]}
    assert sorted(by_name) == ["p1", "p2", "p3"]
    # STEADY, the moving queue, and the broken project's queue, placed on p3 before it failed
    assert sum(p["queues"] for p in by_name.values()) == doc["queues"] == len(STEADY) + 2
    assert sum(p["queue_share"] for p in by_name.values()) == pytest.approx(1.0)
    assert [p["weight_share"] for p in by_name.values()] == pytest.approx([1 / 3] * 3)
    assert by_name["p1"]["healthy"] and by_name["p2"]["healthy"]
    assert not by_name["p3"]["healthy"] and by_name["p3"]["queues"] == 1
    assert all(len(p["nodes"]) == 1 for p in by_name.values())
    [m] = doc["migrations"]
    assert m["id"] == scraped.migration and m["queue"] == "demo/moving"
    assert m["phase"] in ("INIT", "COPYING", "CATCHING_UP", "FROZEN", "SWITCHED", "CLEANUP")

    shown = marconi(scraped.url, "status")
    assert shown.returncode == 0, shown.stderr
    for name in ("p1", "p2", "p3"):
        assert any(line.split()[:2] == [name, "active"] for line in shown.stdout.splitlines())
    assert "0/1 healthy" in shown.stdout and "1/1 healthy" in shown.stdout
