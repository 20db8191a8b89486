"""The admin commands against the fake admin API: outputs, JSON, exit codes."""

from __future__ import annotations

import pytest

from catalog.records import Partition
from tests.marconi.conftest import Cli
from tests.marconi.fake_admin import FakeAdmin
from tests.services import free_port

P1 = Partition("p1", nodes=("http://127.0.0.1:9001",))
P2 = Partition("p2", nodes=("http://127.0.0.1:9002", "http://127.0.0.1:9003"), weight=3)


@pytest.fixture
async def two(fake: FakeAdmin) -> FakeAdmin:
    await fake.catalog.add_partition(P1)
    await fake.catalog.add_partition(P2)
    return fake


# --- partitions ----------------------------------------------------------------------------------


async def test_partitions_list_prints_a_table(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("partitions", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "WEIGHT", "NODES"]
    assert lines[1].split() == ["p1", "active", "1", "http://127.0.0.1:9001"]
    assert lines[2].split() == [
        "p2",
        "active",
        "3",
        "http://127.0.0.1:9002,http://127.0.0.1:9003",
    ]
    # Columns line up: every row's state starts where the header's does.
    assert {line.index(" active") for line in lines[1:]} == {lines[0].index(" STATE")}


async def test_partitions_list_json(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("partitions", "list", "--json")
    assert result.code == 0
    assert result.json == {
        "partitions": [
            {
                "name": "p1",
                "nodes": ["http://127.0.0.1:9001"],
                "weight": 1,
                "state": "active",
                "storage": "",
            },
            {
                "name": "p2",
                "nodes": ["http://127.0.0.1:9002", "http://127.0.0.1:9003"],
                "weight": 3,
                "state": "active",
                "storage": "",
            },
        ]
    }


async def test_every_request_carries_the_admin_role(two: FakeAdmin, cli: Cli) -> None:
    await cli("partitions", "list")
    assert two.requests
    assert all(headers.get("X-Roles") == "admin" for _, _, headers in two.requests)
    assert all("X-Auth-Token" not in headers for _, _, headers in two.requests)


async def test_a_token_from_the_flag_or_the_environment(
    two: FakeAdmin, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For a proxy run with --auth keystone: the flag wins over MARCONI_AUTH_TOKEN."""
    monkeypatch.setenv("MARCONI_AUTH_TOKEN", "from-env")
    assert (await cli("pins", "list")).code == 0
    assert two.requests[-1][2]["X-Auth-Token"] == "from-env"
    result = await cli("partitions", "list", "--token", "from-flag")
    assert result.code == 0 and two.requests[-1][2]["X-Auth-Token"] == "from-flag"
    assert "from-flag" not in result.out + result.err


async def test_partitions_list_empty_says_how_to_add(cli: Cli) -> None:
    result = await cli("partitions", "list")
    assert result.code == 0
    assert "marconi partitions add" in result.out
    assert (await cli("partitions", "list", "--json")).json == {"partitions": []}


async def test_partitions_add_then_again_then_differently(fake: FakeAdmin, cli: Cli) -> None:
    argv = ("partitions", "add", "p3", "--node", "http://a:1", "--node", "http://b:2")
    first = await cli(*argv, "--weight", "2", "--state", "read-only")
    assert first.code == 0, first.err
    assert first.out.startswith("Added partition p3")
    assert "read-only" in first.out and "http://a:1,http://b:2" in first.out
    assert (await fake.catalog.partition("p3")).weight == 2

    again = await cli(*argv, "--weight", "2", "--state", "read-only", "--json")
    assert again.code == 0
    assert again.json == {
        "created": False,
        "partition": {
            "name": "p3",
            "nodes": ["http://a:1", "http://b:2"],
            "weight": 2,
            "state": "read-only",
            "storage": "",
        },
    }

    other = await cli(*argv, "--weight", "5")
    assert other.code == 1
    assert other.out == ""
    assert "already exists" in other.err


async def test_partitions_add_json_reports_created(fake: FakeAdmin, cli: Cli) -> None:
    result = await cli("partitions", "add", "p9", "--node", "http://n:1", "--json")
    assert result.code == 0
    assert result.json["created"] is True
    assert result.json["partition"]["weight"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ("partitions", "add", "p3"),  # no --node
        ("partitions", "add", "p3", "--node", "http://a:1", "--state", "sleepy"),
        ("partitions", "add", "p3", "--node", "http://a:1", "--weight", "-1"),
        ("partitions", "add", "p3", "--node", "http://a:1", "--weight", "heavy"),
        ("partitions", "add", "bad name", "--node", "http://a:1"),
        ("partitions", "add", "p3", "--node", "10.0.0.5:8889"),  # no scheme
        ("partitions", "set", "p1"),  # nothing to change
        ("partitions", "set", "p1", "--node", "ftp://a"),
        ("pins", "set", "demo", "p/1"),
        ("partitions",),
        ("queues", "where", "demo"),
        ("pins", "set", "demo"),
    ],
)
async def test_usage_errors_exit_2(cli: Cli, argv: tuple[str, ...]) -> None:
    result = await cli(*argv)
    assert result.code == 2
    assert result.out == ""
    assert result.err


async def test_partitions_set(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("partitions", "set", "p1", "--weight", "0", "--state", "draining")
    assert result.code == 0, result.err
    assert "Updated partition p1" in result.out
    assert result.out.splitlines()[-1].split()[:3] == ["p1", "draining", "0"]

    nodes = await cli("partitions", "set", "p2", "--node", "http://c:3", "--json")
    assert nodes.json == {
        "name": "p2",
        "nodes": ["http://c:3"],
        "weight": 3,
        "state": "active",
        "storage": "",
    }
    assert [r[0] for r in two.requests if r[1] == "/admin/partitions/p2"] == ["PATCH"]


async def test_partitions_set_unknown_exits_1(cli: Cli) -> None:
    result = await cli("partitions", "set", "nope", "--weight", "2")
    assert result.code == 1
    assert "nope" in result.err


async def test_partitions_remove(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("partitions", "remove", "p1")
    assert (result.code, result.out) == (0, "Removed partition p1\n")
    assert [p.name for p in await two.catalog.partitions()] == ["p2"]
    assert (await cli("partitions", "remove", "p2", "--json")).json == {"removed": "p2"}


async def test_partitions_remove_refused_while_owning_queues(two: FakeAdmin, cli: Cli) -> None:
    await two.catalog.place("demo", "orders", "p1")
    result = await cli("partitions", "remove", "p1")
    assert result.code == 1
    assert "still owns queues" in result.err
    assert [p.name for p in await two.catalog.partitions()] == ["p1", "p2"]


async def test_partitions_remove_unknown_exits_1(cli: Cli) -> None:
    result = await cli("partitions", "remove", "ghost", "--json")
    assert result.code == 1
    assert result.out == ""
    assert "ghost" in result.err


# --- queues where --------------------------------------------------------------------------------


async def test_queues_where_placed(two: FakeAdmin, cli: Cli) -> None:
    await two.catalog.place("demo", "orders", "p2")
    result = await cli("queues", "where", "demo", "orders")
    assert result.code == 0
    rows = dict(line.split(None, 1) for line in result.out.splitlines())
    assert rows == {
        "project": "demo",
        "queue": "orders",
        "placed": "yes",
        "partition": "p2",
        "epoch": "1",
        "state": "active",
    }
    doc = (await cli("queues", "where", "demo", "orders", "--json")).json
    assert doc["placed"] is True and doc["partition"] == "p2" and doc["epoch"] == 1


async def test_queues_where_not_placed_shows_the_policy_choice(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("queues", "where", "demo", "fresh")
    assert result.code == 0
    assert "placed     no" in result.out
    assert "partition  p1" in result.out
    assert (await cli("queues", "where", "demo", "fresh", "--json")).json == {
        "placed": False,
        "partition": "p1",
    }


@pytest.mark.parametrize("project", ["_", ""])
async def test_queues_where_without_a_project(two: FakeAdmin, cli: Cli, project: str) -> None:
    await two.catalog.place("", "legacy", "p2")
    result = await cli("queues", "where", project, "legacy", "--json")
    assert result.code == 0, result.err
    assert result.json["partition"] == "p2"
    assert two.requests[-1][1] == "/admin/placements/_/legacy"


async def test_queue_names_are_escaped_in_the_path(two: FakeAdmin, cli: Cli) -> None:
    await cli("queues", "where", "a b", "q%1")
    assert two.requests[-1][1] == "/admin/placements/a b/q%1"


# --- pins ----------------------------------------------------------------------------------------


async def test_pins_set_list_remove(two: FakeAdmin, cli: Cli) -> None:
    assert "No pins" in (await cli("pins", "list")).out

    result = await cli("pins", "set", "acme", "p2")
    assert result.code == 0, result.err
    assert "acme" in result.out and "p2" in result.out
    assert (await cli("pins", "set", "zeta", "p1", "--json")).json == {
        "project": "zeta",
        "partition": "p1",
    }

    listed = await cli("pins", "list")
    assert [line.split() for line in listed.out.splitlines()] == [
        ["PROJECT", "PARTITION"],
        ["acme", "p2"],
        ["zeta", "p1"],
    ]
    assert (await cli("pins", "list", "--json")).json == {
        "pins": [{"project": "acme", "partition": "p2"}, {"project": "zeta", "partition": "p1"}]
    }

    removed = await cli("pins", "remove", "acme")
    assert removed.code == 0
    assert (await cli("pins", "list", "--json")).json["pins"] == [
        {"project": "zeta", "partition": "p1"}
    ]


async def test_pin_to_an_unknown_partition_exits_1(two: FakeAdmin, cli: Cli) -> None:
    result = await cli("pins", "set", "acme", "p7")
    assert result.code == 1
    assert "p7" in result.err


# --- health --------------------------------------------------------------------------------------


def _health(p2_healthy: bool) -> dict[str, object]:
    return {
        "catalog": {"state": "live", "revision": 42},
        "partitions": {
            "p1": {"healthy": True, "nodes": {"http://n1:1": {"healthy": True, "outstanding": 0}}},
            "p2": {
                "healthy": p2_healthy,
                "nodes": {
                    "http://n2:1": {"healthy": p2_healthy, "outstanding": 3},
                    "http://n3:1": {"healthy": True, "outstanding": 1},
                },
            },
        },
    }


async def test_health_all_good(fake: FakeAdmin, cli: Cli) -> None:
    fake.health = _health(p2_healthy=True)
    result = await cli("health")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "catalog  live (revision 42)"
    assert lines[2].split() == ["PARTITION", "HEALTHY", "NODE", "NODE", "HEALTHY", "OUTSTANDING"]
    assert lines[3].split() == ["p1", "yes", "http://n1:1", "yes", "0"]
    assert lines[4].split() == ["p2", "yes", "http://n2:1", "yes", "3"]
    assert lines[5].split() == ["http://n3:1", "yes", "1"]
    assert lines[-1] == "healthy"
    assert (await cli("health", "--json")).json == fake.health


async def test_health_with_a_sick_partition_exits_1(fake: FakeAdmin, cli: Cli) -> None:
    fake.health = _health(p2_healthy=False)
    result = await cli("health")
    assert result.code == 1
    assert result.out.splitlines()[-1] == "NOT healthy"
    json_result = await cli("health", "--json")
    assert json_result.code == 1
    assert json_result.json["partitions"]["p2"]["healthy"] is False


async def test_health_with_a_stale_catalog_exits_1(fake: FakeAdmin, cli: Cli) -> None:
    fake.health = {"catalog": {"state": "reconnecting", "revision": 9}, "partitions": {}}
    assert (await cli("health")).code == 1


# --- reaching the admin API ----------------------------------------------------------------------


async def test_unreachable_exits_3(cli: Cli) -> None:
    for argv in (("partitions", "list"), ("health",), ("pins", "remove", "x")):
        result = await cli(*argv, "--url", f"http://127.0.0.1:{free_port()}", url=False)
        assert result.code == 3
        assert result.out == ""
        assert "cannot reach" in result.err


async def test_unavailable_catalog_exits_3(fake: FakeAdmin, cli: Cli) -> None:
    fake.unavailable = True
    result = await cli("partitions", "list", "--json")
    assert result.code == 3
    assert "catalog is unreachable" in result.err


async def test_marconi_url_from_the_environment(
    two: FakeAdmin, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARCONI_URL", cli.url)
    result = await cli("partitions", "list", "--json", url=False)
    assert result.code == 0
    assert len(result.json["partitions"]) == 2
