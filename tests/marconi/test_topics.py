"""`marconi migrate move --topic`: a topic moves by its name, through the admin API or as a dry
run that reads the topic's container."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog

from catalog.migrations import Phase
from catalog.registry import Registry
from tests.conftest import FakeClock
from tests.marconi.conftest import Cli
from tests.migrate.harness import PROJECT, migration_cluster
from tests.proxy.cluster import Cluster
from tests.proxy.conftest import call
from tests.services import Etcd
from wire.topics import container


async def test_move_a_topic(live: Cluster, live_cli: Cli) -> None:
    assert (await call(live.proxy, "PUT", "/v2/topics/orders"))[0] == 201
    assert (await call(live.proxy, "PUT", "/v2/queues/orders"))[0] == 201
    source = (await live.catalog.placement(PROJECT, container("orders"))).partition  # type: ignore[union-attr]
    target = "p2" if source != "p2" else "p3"
    result = await live_cli("migrate", "move", PROJECT, "orders", "--topic", "--to", target)
    assert result.code == 0, result.err
    [m] = await Registry(live.catalog).list()
    assert (m.queue, m.target, m.phase) == (container("orders"), target, Phase.INIT)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())  # the dry run reads the storage on the real clock


async def test_a_dry_run_reads_the_topic(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    cli = Cli(capsys, "")
    with structlog.testing.capture_logs():
        async with migration_cluster(etcd_server.url, uris, clock) as c:
            body = {"messages": [{"body": i, "ttl": 3600} for i in range(7)]}
            assert (await call(c.proxy, "POST", "/v2/topics/news/messages", json=body))[0] == 201
            placement = await c.catalog.placement(PROJECT, container("news"))
            assert placement is not None
            target = "p2" if placement.partition == "p1" else "p1"
            argv = ["migrate", "move", PROJECT, "news", "--topic", "--to", target, "--dry-run"]
            argv += ["--catalog", c.etcd_url, "--catalog-prefix", c.catalog.keys.prefix]
            shown = await cli(*argv, "--json", url=False)
            assert shown.code == 0, shown.err
            assert (shown.json["source"], shown.json["target"]) == (placement.partition, target)
            assert (shown.json["admitted"], shown.json["messages"]) == (True, 7)
            assert shown.json["queue"] == container("news")
            assert await Registry(c.catalog).list() == []
