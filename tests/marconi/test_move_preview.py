"""`marconi migrate move --dry-run` against a real etcd and SQLite partitions: the plan, the
counts and the limits that would refuse the move, and nothing written to the catalog or to
either partition's storage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from catalog.registry import Registry
from node.errors import ChangesLost
from tests.conftest import FakeClock
from tests.marconi.conftest import Cli
from tests.migrate.harness import PROJECT, QUEUE, MigrationCluster, Q, migration_cluster
from tests.proxy.conftest import call
from tests.services import Etcd


@pytest.fixture
def clock() -> FakeClock:
    """Today: the CLI reads the storage on the real clock, so the messages must be live by it."""
    return FakeClock(time.time())


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    """The nodes' and proxy's logs off the CLI's stdout; the CLI's logging set-up undone."""
    with structlog.testing.capture_logs():
        yield


async def state(c: MigrationCluster) -> tuple[Any, ...]:
    """Everything a dry run could have written: the catalog and both partitions' queues."""
    snapshot = await c.catalog.store.snapshot(c.catalog.keys.prefix)
    found: list[Any] = [
        snapshot.revision,
        [(v.key, v.value, v.mod_revision) for v in snapshot.items],
    ]
    for name in c.uris:
        transfer = c.storage(name).transfer
        found += [
            await transfer.export_queue(PROJECT, QUEUE),
            await transfer.digest(PROJECT, QUEUE),
            await transfer.fence(PROJECT, QUEUE),
            await transfer.sequence(PROJECT, QUEUE),
        ]
        with pytest.raises(ChangesLost):  # untracked
            await transfer.changes(PROJECT, QUEUE, since=0, limit=1)
    return tuple(found)


async def cluster_with_a_queue(c: MigrationCluster) -> tuple[str, str]:
    assert (await call(c.proxy, "PUT", Q))[0] == 201
    messages = [{"body": {"n": i}, "ttl": 3600} for i in range(10)]
    for _ in range(3):
        assert (await call(c.proxy, "POST", f"{Q}/messages", json={"messages": messages}))[0] == 201
    source = (await c.placement()).partition
    return source, "p2" if source == "p1" else "p1"


def dry_run(c: MigrationCluster, target: str, *flags: str) -> list[str]:
    return [
        "migrate",
        "move",
        PROJECT,
        QUEUE,
        "--to",
        target,
        "--dry-run",
        "--catalog",
        c.etcd_url,
        "--catalog-prefix",
        c.catalog.keys.prefix,
        *flags,
    ]


async def test_a_dry_run_prints_the_plan_and_changes_nothing(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    cli = Cli(capsys, "")
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        source, target = await cluster_with_a_queue(c)
        before = await state(c)

        shown = await cli(*dry_run(c, target), url=False)
        assert shown.code == 0, shown.err
        assert "nothing was written" in shown.out
        assert f"{PROJECT}/{QUEUE} from {source} to {target}" in shown.out
        assert "30 (" in shown.out and "admitted  yes" in shown.out
        assert "switch_placement" in shown.out and "THE POINT OF NO RETURN" in shown.out

        doc = (await cli(*dry_run(c, target, "--json"), url=False)).json
        assert (doc["source"], doc["target"], doc["admitted"], doc["refused"]) == (
            source,
            target,
            True,
            [],
        )
        assert (doc["counted"], doc["messages"]) == (True, 30)
        assert doc["body_bytes"] == 3 * sum(len(f'{{"n": {i}}}') for i in range(10))
        assert doc["limits"] == {"migrations_out": 1, "migrations_in": 1, "migration_cooldown": 300}
        assert [s["verb"] for s in doc["plan"]][:3] == [
            "prepare_target",
            "copy_queue",
            "copy_batch",
        ]
        assert await state(c) == before


async def test_a_dry_run_lists_what_would_refuse_the_move(
    etcd_server: Etcd,
    tmp_path: Path,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    cli = Cli(capsys, "")
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        source, target = await cluster_with_a_queue(c)
        await c.catalog.place(PROJECT, "other", source)
        await Registry(c.catalog).create(PROJECT, "other", target)  # busy both ways
        before = await state(c)

        refused = await cli(*dry_run(c, target, "--json"), url=False)
        assert refused.code == 1
        assert refused.json["admitted"] is False
        assert refused.json["refused"] == [
            f"partition {source} already has an outgoing migration",
            f"partition {target} already has an incoming migration",
        ]
        assert refused.json["messages"] == 30  # the plan is there all the same
        # The proxy's limits as set in this environment.
        monkeypatch.setenv("MARCONI_MIGRATIONS_OUT", "2")
        monkeypatch.setenv("MARCONI_MIGRATIONS_IN", "2")
        assert (await cli(*dry_run(c, target), url=False)).code == 0
        assert (await cli(*dry_run(c, source), url=False)).code == 1  # already there
        missing = await cli(*dry_run(c, "p9"), url=False)
        assert missing.code == 1 and "p9 does not exist" in missing.err
        assert (await cli(*dry_run(c, target, "--wait"), url=False)).code == 2
        assert await state(c) == before


async def test_a_sqlite_file_elsewhere_is_not_created(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    cli = Cli(capsys, "")
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        source, target = await cluster_with_a_queue(c)
        elsewhere = tmp_path / "on-another-machine" / f"{source}.db"
        await c.catalog.update_partition(source, storage=f"sqlite:///{elsewhere}")
        doc = (await cli(*dry_run(c, target, "--json"), url=False)).json
        assert (doc["counted"], doc["messages"]) == (False, None)
        assert "is not on this machine" in doc["unread"]
        assert doc["plan"] and doc["admitted"] is True
        assert not elsewhere.parent.exists()
