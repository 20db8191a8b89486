"""`marconi migrate` against a real admin API (a proxy over the in-memory catalog), with the
stand-in worker moving records along when a test needs one."""

from __future__ import annotations

import dataclasses
import re

import pytest

from catalog.migrations import Phase
from catalog.records import PartitionState
from catalog.registry import Registry
from tests.marconi.conftest import Cli, make_queues, owner, worker
from tests.migrate.fake_worker import advance
from tests.proxy.cluster import Cluster
from tests.proxy.conftest import PROJECT
from tests.services import free_port

FAST = ("--interval", "0.02")
PHASE_ORDER = [p.value for p in Phase]


def phases_in(text: str) -> list[str]:
    """The phases named in progress lines, in the order printed."""
    return re.findall(r"p1 -> p2 ([A-Z_]+),", text)


async def test_move_creates_a_migration_and_says_how_to_follow_it(
    live: Cluster, live_cli: Cli
) -> None:
    await make_queues(live, "orders")
    result = await live_cli("migrate", "move", PROJECT, "orders", "--to", "p2")
    assert result.code == 0, result.err
    [m] = await Registry(live.catalog).list()
    assert (m.queue, m.source, m.target, m.phase) == ("orders", "p1", "p2", Phase.INIT)
    assert result.out.splitlines() == [
        f"Created migration {m.id}: {PROJECT}/orders p1 -> p2",
        f"Follow it: marconi migrate status {m.id} --wait",
    ]


async def test_move_json_prints_the_record(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    result = await live_cli("migrate", "move", PROJECT, "orders", "--to", "p3", "--json")
    assert result.code == 0
    [m] = await Registry(live.catalog).list()
    assert result.json["id"] == m.id and result.json["phase"] == "INIT"
    assert result.json["target"] == "p3"


async def test_move_wait_follows_the_phases_to_done(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    async with worker(live, delay=0.03):
        result = await live_cli("migrate", "move", PROJECT, "orders", "--to", "p2", "--wait", *FAST)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("Created migration ")
    assert lines[-1].startswith(f"Done: {PROJECT}/orders is on p2 (7 messages copied, ")
    seen = phases_in(result.out)
    assert seen and seen == sorted(set(seen), key=PHASE_ORDER.index)  # each once, in order
    assert "\r" not in result.out  # not a terminal: plain lines, no bar
    assert await owner(live, "orders") == "p2"


async def test_move_wait_json_prints_only_the_final_record(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    async with worker(live):
        result = await live_cli(
            "migrate", "move", PROJECT, "orders", "--to", "p2", "--wait", "--json", *FAST
        )
    assert result.code == 0, result.err
    assert result.json["phase"] == "DONE" and result.json["progress"]["copied"] == 7
    assert "SWITCHED" in result.json["timings"]


async def test_a_failed_migration_exits_1(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    async with worker(live, fail=frozenset({"orders"})):
        result = await live_cli("migrate", "move", PROJECT, "orders", "--to", "p2", "--wait", *FAST)
    assert result.code == 1
    assert "FAILED: the target refused writes" in result.err
    assert "Done" not in result.out
    assert await owner(live, "orders") == "p1"


async def test_a_cancelled_migration_exits_1(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    m = await Registry(live.catalog).create(PROJECT, "orders", "p2")
    await Registry(live.catalog).request_cancel(m.id)
    async with worker(live):
        result = await live_cli("migrate", "status", m.id, "--wait", "--json", *FAST)
    assert result.code == 1
    assert result.json["phase"] == "CANCELLED"
    assert f"migration {m.id} of {PROJECT}/orders CANCELLED" in result.err


async def test_waiting_without_a_worker_times_out_with_exit_4(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "orders")
    result = await live_cli(
        "migrate", "move", PROJECT, "orders", "--to", "p2", "--wait", "--json",
        "--wait-timeout", "0.2", *FAST,
    )  # fmt: skip
    assert result.code == 4
    assert result.json["phase"] == "INIT"  # the last record seen, for scripts
    assert "still INIT after" in result.err and "marconi migrate status" in result.err
    [m] = await Registry(live.catalog).list()
    assert m.phase is Phase.INIT and not m.cancel_requested  # timing out cancels nothing


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("migrate", "move", PROJECT, "nowhere", "--to", "p2"), "not placed"),
        (("migrate", "move", PROJECT, "orders", "--to", "p9"), "p9 does not exist"),
        (("migrate", "move", PROJECT, "orders", "--to", "p1"), "already on p1"),
        (("migrate", "move", PROJECT, "orders", "--to", "p3"), "draining"),
    ],
)
async def test_refused_moves_exit_1(
    live: Cluster, live_cli: Cli, argv: tuple[str, ...], says: str
) -> None:
    await make_queues(live, "orders")
    await live.catalog.update_partition("p3", state=PartitionState.DRAINING)
    result = await live_cli(*argv)
    assert result.code == 1 and result.out == ""
    assert says in result.err
    assert await Registry(live.catalog).list() == []


@pytest.mark.parametrize(
    "argv",
    [
        ("migrate", "move", PROJECT, "orders"),  # no --to
        ("migrate", "move", PROJECT, "orders", "--to", "bad name"),
        ("migrate", "move", PROJECT, "orders", "--to", "p2", "--wait-timeout", "soon"),
        ("migrate", "status", "42"),
        ("migrate", "cancel", "not-an-id"),
        ("migrate", "status", "--wait"),  # --wait needs an id
        ("migrate",),
    ],
)
async def test_usage_errors_exit_2_before_anything_is_sent(
    live: Cluster, live_cli: Cli, argv: tuple[str, ...]
) -> None:
    await make_queues(live, "orders")
    result = await live_cli(*argv)
    assert result.code == 2
    assert await Registry(live.catalog).list() == []


async def test_an_unreachable_admin_api_exits_3(live_cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (("migrate", "list"), ("migrate", "move", PROJECT, "q", "--to", "p2", "--wait")):
        result = await live_cli(*argv, "--url", url, url=False)
        assert result.code == 3 and "cannot reach the admin API" in result.err


async def test_list_and_status(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "a", "b")
    registry = Registry(live.catalog)
    done = await registry.create(PROJECT, "a", "p2")
    for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
        await advance(live.catalog, done.id, phase, copied=12)
    for phase in (Phase.CLEANUP, Phase.DONE):
        await advance(live.catalog, done.id, phase)
    moving = await registry.create(PROJECT, "b", "p3")
    await advance(live.catalog, moving.id, Phase.COPYING, copied=1234)

    listed = await live_cli("migrate", "list")
    assert listed.code == 0
    header, *rows = listed.out.splitlines()
    assert header.split() == [
        "ID",
        "PROJECT",
        "QUEUE",
        "FROM",
        "TO",
        "PHASE",
        "COPIED",
        "LAG",
        "UPDATED",
    ]
    assert [row.split()[:7] for row in rows] == [
        [moving.id, PROJECT, "b", "p1", "p3", "COPYING", "1234"]
    ]
    every = await live_cli("migrate", "list", "--all", "--json")
    assert [m["id"] for m in every.json["migrations"]] == [done.id, moving.id]
    assert (await live_cli("migrate", "status", "--json")).json == {
        "migrations": [every.json["migrations"][1]]
    }

    status = await live_cli("migrate", "status", done.id)
    assert status.code == 0
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in status.out.splitlines())
    assert shown["phase"] == "DONE" and shown["to"] == "p2" and shown["queue"] == f"{PROJECT}/a"
    assert shown["messages copied"] == "12"
    assert "SWITCHED" in shown["timings"]
    assert (await live_cli("migrate", "status", done.id, "--json")).json["phase"] == "DONE"
    missing = await live_cli("migrate", "status", "0123456789abcdef01234567")
    assert missing.code == 1 and "does not exist" in missing.err


async def test_nothing_in_progress(live_cli: Cli) -> None:
    result = await live_cli("migrate", "list")
    assert result.code == 0 and "No migration in progress" in result.out
    assert (await live_cli("migrate", "list", "--all", "--json")).json == {"migrations": []}


async def test_cancel(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "a", "b")
    registry = Registry(live.catalog)
    m = await registry.create(PROJECT, "a", "p2")
    result = await live_cli("migrate", "cancel", m.id)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Cancel requested for migration {m.id} of {PROJECT}/a (INIT)")
    assert (await registry.get(m.id)).migration.cancel_requested
    await advance(live.catalog, m.id, Phase.CANCELLED)
    again = await live_cli("migrate", "cancel", m.id)
    assert again.code == 0 and "already cancelled" in again.out

    switched = await registry.create(PROJECT, "b", "p3")
    for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
        await advance(live.catalog, switched.id, phase)
    refused = await live_cli("migrate", "cancel", switched.id, "--json")
    assert refused.code == 1 and refused.out == ""
    assert "move it back" in refused.err


async def test_status_shows_a_catch_up_converging_or_stalled(live: Cluster, live_cli: Cli) -> None:
    await make_queues(live, "busy")
    registry = Registry(live.catalog)
    m = await registry.create(PROJECT, "busy", "p2")
    await advance(live.catalog, m.id, Phase.COPYING)
    await advance(live.catalog, m.id, Phase.CATCHING_UP)
    stored = await registry.get(m.id)
    stalled = "the lag stopped shrinking at 310 records over 40 rounds: still catching up"
    progress = dataclasses.replace(
        stored.migration.progress, rounds=41, lag=320, arrived=335, rate=2900.0, stalled=stalled
    )
    await registry.save(stored, dataclasses.replace(stored.migration, progress=progress))

    listed = await live_cli("migrate", "list")
    [row] = listed.out.splitlines()[1:]
    assert row.split()[5:8] == ["CATCHING_UP", "0", "320!"]
    status = await live_cli("migrate", "status", m.id)
    shown = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in status.out.splitlines())
    assert shown["catch-up"] == (f"round 41: lag 320 (335 arrived meanwhile, 2,900/s); {stalled}")
