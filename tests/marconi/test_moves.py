"""`marconi drain` and `marconi rebalance` against a real admin API (a proxy over the in-memory
catalog), with the stand-in worker carrying migrations out when a test needs one."""

from __future__ import annotations

import pytest

from catalog.migrations import Phase
from catalog.records import PartitionState
from catalog.registry import Registry
from tests.marconi.conftest import Cli, make_queues, owner, worker
from tests.proxy.cluster import Cluster
from tests.proxy.conftest import PROJECT
from tests.proxy.test_piles import pile_one

FAST = ("--interval", "0.02")
NAMES = [f"q{i}" for i in range(4)]

# --- drain ---------------------------------------------------------------------------------------


async def test_drain_marks_the_partition_and_starts_the_first_move(
    live: Cluster, live_cli: Cli
) -> None:
    await make_queues(live, *NAMES)
    result = await live_cli("drain", "p1")
    assert result.code == 0, result.err
    assert (await live.catalog.partition("p1")).state is PartitionState.DRAINING
    [m] = await Registry(live.catalog).list()
    lines = result.out.splitlines()
    assert lines[0] == "Partition p1 is draining: it gets no new queues"
    assert lines[1] == "4 queues left, 1 moving, 0 cooling down after a recent move"
    assert m.id in result.out and "Planned (4 moves):" in result.out
    assert lines[-1] == "Follow it to the end: marconi drain p1 --wait"

    again = await live_cli("drain", "p1", "--json")
    assert again.code == 0
    assert (again.json["remaining"], again.json["created"]) == (4, [])
    assert [x["id"] for x in again.json["moving"]] == [m.id]


async def test_drain_and_remove_tell_of_the_dead_letters_waiting_in_the_piles(
    live: Cluster, live_cli: Cli
) -> None:
    await pile_one(live)  # two letters in p1's pile for tenant/failed on p2; p1 owns nothing
    result = await live_cli("drain", "p1")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[1] == "0 queues left, 0 moving, 0 cooling down after a recent move"
    assert lines[2] == f"2 dead letters waiting to move (2 for {PROJECT}/failed)"
    assert lines[-1] == "Follow it to the end: marconi drain p1 --wait"
    waited = await live_cli("drain", "p1", "--wait", "--wait-timeout", "0.1", *FAST)
    assert waited.code == 4
    assert "0 queues left and 2 dead letters waiting to move" in waited.err

    refused = await live_cli("partitions", "remove", "p1")
    assert refused.code == 1
    told = "still holds 2 dead letters waiting to move to their dead-letter queues"
    assert f"{told} (2 for {PROJECT}/failed)" in refused.err
    forced = await live_cli("partitions", "remove", "p1", "--force")
    assert (forced.code, forced.out) == (0, "Removed partition p1\n")


async def test_drain_wait_moves_everything_off(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *NAMES)
    async with worker(live):
        result = await live_cli("drain", "p1", "--wait", *FAST)
    assert result.code == 0, result.err
    assert [await owner(live, q) for q in NAMES] != ["p1"] * 4
    assert "p1" not in {await owner(live, q) for q in NAMES}
    lines = result.out.splitlines()
    assert lines[0].startswith("p1: 0 of 4 queues moved; ")
    assert "p1: 3 of 4 queues moved" in result.out
    assert lines[-1].startswith("Drained p1: it owns no queues")
    assert lines[-1].endswith("Remove it with: marconi partitions remove p1")
    assert len(await Registry(live.catalog).list()) == 4


async def test_drain_wait_json_is_the_last_report(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *NAMES[:2])
    async with worker(live):
        result = await live_cli("drain", "p1", "--wait", "--json", *FAST)
    assert result.code == 0, result.err
    assert (result.json["remaining"], result.json["moving"]) == (0, [])
    assert result.json["state"] == "draining"


async def test_drain_wait_stops_at_a_failed_migration(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *NAMES)
    async with worker(live, fail=frozenset({"q0", "q1", "q2", "q3"})):
        result = await live_cli("drain", "p1", "--wait", *FAST)
    assert result.code == 1
    assert "FAILED: the target refused writes; the drain stopped waiting" in result.err
    assert "run marconi drain p1 again" in result.err


async def test_drain_wait_times_out_with_exit_4(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *NAMES)
    result = await live_cli("drain", "p1", "--wait", "--wait-timeout", "0.2", *FAST)
    assert result.code == 4
    assert "drain of p1: 4 queues left after" in result.err
    assert result.out.startswith("p1: 0 of 4 queues moved; ")


async def test_drain_refusals(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *NAMES)
    for name in ("p2", "p3"):
        await live.catalog.update_partition(name, state=PartitionState.READ_ONLY)
    refused = await live_cli("drain", "p1", "--wait")
    assert refused.code == 1 and "no active partition" in refused.err
    assert (await live_cli("drain", "p9")).code == 1
    assert (await live_cli("drain", "bad name")).code == 2
    assert (await live_cli("drain", "p1", "--interval", "0")).code == 2
    assert await Registry(live.catalog).list() == []


# --- rebalance -----------------------------------------------------------------------------------


async def test_rebalance_dry_run_prints_loads_and_plan_and_starts_nothing(
    live: Cluster, live_cli: Cli
) -> None:
    await make_queues(live, *(f"q{i}" for i in range(6)))
    result = await live_cli("rebalance", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "Partition loads (measured: queues, messages; tolerance 10.0%)"
    assert lines[1].split() == [
        "PARTITION",
        "STATE",
        "WEIGHT",
        "QUEUES",
        "MESSAGES",
        "SHARE",
        "TARGET",
        "AFTER",
    ]
    assert lines[2].split() == ["p1", "active", "1", "6", "0", "100.0%", "33.3%", "33.3%"]
    assert lines[3].split() == ["p2", "active", "1", "0", "0", "0.0%", "33.3%", "33.3%"]
    assert "Plan (4 moves):" in result.out
    assert lines[-1] == "Dry run: nothing was started."
    assert await Registry(live.catalog).list() == []
    assert {await owner(live, f"q{i}") for i in range(6)} == {"p1"}


async def test_rebalance_starts_what_the_limits_allow(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, *(f"q{i}" for i in range(6)))
    result = await live_cli("rebalance", "--max-moves", "2", "--tolerance", "0.05", "--json")
    assert result.code == 0, result.err
    assert (result.json["dry_run"], result.json["tolerance"]) == (False, 0.05)
    assert len(result.json["plan"]) == 2 and len(result.json["created"]) == 1
    [m] = await Registry(live.catalog).list()
    assert m.phase is Phase.INIT and m.id == result.json["created"][0]["id"]

    text = await live_cli("rebalance")
    assert text.code == 0
    assert "Started 0 of 3 moves" in text.out
    assert text.out.rstrip().endswith(
        "Run marconi rebalance again as they finish to start the rest."
    )


async def test_a_balanced_cluster_has_nothing_to_move(live: Cluster, live_cli: Cli) -> None:
    result = await live_cli("rebalance")
    assert result.code == 0
    assert "nothing to move" in result.out


@pytest.mark.parametrize(
    "argv",
    [
        ("rebalance", "--tolerance", "2"),
        ("rebalance", "--tolerance", "a lot"),
        ("rebalance", "--max-moves", "0"),
        ("rebalance", "--max-moves", "1.5"),
    ],
)
async def test_rebalance_usage_errors_exit_2(
    live: Cluster, live_cli: Cli, argv: tuple[str, ...]
) -> None:
    result = await live_cli(*argv)
    assert result.code == 2
    assert await Registry(live.catalog).list() == []


async def test_rebalance_never_moves_onto_a_draining_partition(
    live: Cluster, live_cli: Cli
) -> None:
    await make_queues(live, *(f"q{i}" for i in range(4)))
    await live.catalog.update_partition("p3", state=PartitionState.DRAINING)
    result = await live_cli("rebalance", "--dry-run", "--json")
    assert {m["to"] for m in result.json["plan"]} == {"p2"}
    assert PROJECT in {m["project"] for m in result.json["plan"]}
