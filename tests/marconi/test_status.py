"""`marconi status` against a real admin API (a proxy over the in-memory catalog, with in-process
nodes): its JSON document, and the view drawn from it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from catalog.records import PartitionState
from marconi.status import copy_rate, share_bar, watch
from tests.marconi.conftest import Cli, make_queues
from tests.proxy.cluster import Cluster
from tests.proxy.conftest import PROJECT, call

MESSAGES = {"messages": [{"body": {"n": n}, "ttl": 300} for n in range(3)]}


async def _layout(live: Cluster, live_cli: Cli) -> str:
    """Queues a, b, c on p1 (3 messages each), d on p2 (pinned there), and a migration of a to
    p3 waiting for a worker. Returns the migration's id."""
    await make_queues(live, "a", "b", "c")
    for name in ("a", "b", "c"):
        status, _, _ = await call(live.proxy, "POST", f"/v2/queues/{name}/messages", json=MESSAGES)
        assert status == 201
    await live.catalog.pin(PROJECT, "p2")
    cache = live.state().router.cache
    while cache.pins.get(PROJECT) is None or cache.pins[PROJECT].partition != "p2":
        await cache.changed.wait()
    await make_queues(live, "d")
    await live.catalog.update_partition("p3", weight=2)
    moved = await live_cli("migrate", "move", PROJECT, "a", "--to", "p3", "--json")
    assert moved.code == 0, moved.err
    migration_id: str = moved.json["id"]
    return migration_id


async def test_json_gives_each_partition_its_shares_nodes_and_the_migration(
    live: Cluster, live_cli: Cli
) -> None:
    migration_id = await _layout(live, live_cli)
    result = await live_cli("status", "--json")
    assert result.code == 0, result.err
    doc = result.json
    assert doc["catalog"]["state"] == "live"
    assert doc["measured"] == ["queues", "messages"]
    assert (doc["queues"], doc["messages"]) == (4, 9)
    by_name = {p["name"]: p for p in doc["partitions"]}
    assert sorted(by_name) == ["p1", "p2", "p3"]
    p1, p2, p3 = by_name["p1"], by_name["p2"], by_name["p3"]
    assert (p1["queues"], p1["messages"], p1["queue_share"]) == (3, 9, 0.75)
    assert p1["message_share"] == 1.0
    assert (p2["queues"], p2["messages"], p2["queue_share"]) == (1, 0, 0.25)
    assert (p3["queues"], p3["queue_share"]) == (0, 0.0)
    assert (p1["weight_share"], p3["weight_share"]) == (0.25, 0.5)  # weights 1, 1, 2
    for name, p in by_name.items():
        assert p["healthy"] is True
        assert [n["url"] for n in p["nodes"]] == list(live.partitions[name].urls)
        assert all(n["healthy"] for n in p["nodes"])
        assert (p["dead_letters"], p["dead_letters_more"]) == (0, False)
    [m] = doc["migrations"]
    assert m["id"] == migration_id
    assert (m["queue"], m["source"], m["target"]) == (f"{PROJECT}/a", "p1", "p3")
    assert m["phase"] == "INIT"
    assert (m["fraction"], m["copied"], m["rate"]) == (0.0, 0, None)


async def test_a_draining_partition_has_no_weight_share(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "a")
    await live.catalog.update_partition("p2", state=PartitionState.DRAINING)
    doc = (await live_cli("status", "--json")).json
    shares = {p["name"]: p["weight_share"] for p in doc["partitions"]}
    assert shares == {"p1": 0.5, "p2": None, "p3": 0.5}


async def test_the_view_shows_partitions_shares_nodes_and_the_migration(
    live: Cluster, live_cli: Cli
) -> None:
    migration_id = await _layout(live, live_cli)
    result = await live_cli("status")
    assert result.code == 0, result.err
    out = result.out
    assert "catalog watch live" in out
    assert "4 queues, 9 messages" in out
    for name, nodes in live.partitions.items():
        [row] = [line for line in out.splitlines() if line.split()[:2] == [name, "active"]]
        assert "1/1 healthy" in row and row.split()[-1] == "0"  # no dead letter waits
        for url in nodes.urls:
            [node] = [line for line in out.splitlines() if url in line]
            assert node.split()[:3] == [name, url, "yes"]
    assert "DEAD LETTERS" in out
    assert "75.0%" in out and "25.0%" in out  # p1's and p2's shares of the queues
    assert migration_id in out and "p1 -> p3" in out and "INIT" in out


async def test_unreachable_admin_api_exits_3(live_cli: Cli) -> None:
    result = await live_cli("status", "--url", "http://127.0.0.1:9", url=False)
    assert result.code == 3
    assert "cannot reach the admin API" in result.err


@pytest.mark.parametrize(
    ("share", "target", "drawn"),
    [
        (0.5, 0.3, "█████" + "░" * 5 + " 50.0%"),
        (0.0, None, "░" * 10 + " 0.0%"),
        (None, 0.5, "-"),
    ],
)
def test_share_bar_fills_the_share(share: float | None, target: float | None, drawn: str) -> None:
    plain = share_bar(share, target).plain
    if target is None or share is None:
        assert plain == drawn
    else:
        # the weight's mark replaces the cell where the target falls
        mark = round(10 * target)
        assert plain[mark] == "|"
        assert plain[:mark] + plain[mark + 1 :] == drawn[:mark] + drawn[mark + 1 :]


def test_watch_redraws_until_interrupted() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True)
    drawn = []

    def draw() -> Text:
        drawn.append(len(drawn))
        if len(drawn) == 3:
            raise KeyboardInterrupt
        return Text(f"frame {len(drawn)}")

    assert watch(console, draw, 0.01) == 0
    assert len(drawn) == 3
    assert "frame 1" in out.getvalue() and "frame 2" in out.getvalue()


def test_the_copy_rate_is_per_second_spent_copying() -> None:
    copying = {"phase": "COPYING", "updated": 90.0, "progress": {"copied": 500}, "timings": {}}
    assert copy_rate(copying, now=100.0) == 50.0
    done = {"phase": "CLEANUP", "updated": 0.0, "progress": {"copied": 900}}
    assert copy_rate({**done, "timings": {"COPYING": 3.0, "INIT": 50.0}}, now=100.0) == 300.0
    assert copy_rate({**done, "progress": {"copied": 0}}, now=100.0) is None
