"""The dry-run twin: the same machine over steps that only read; the plan, and nothing written."""

from __future__ import annotations

from pathlib import Path

from catalog.registry import Registry
from migrate.dryrun import draft, dry_run
from migrate.storages import PinnedClock, Storages
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, QUEUE, SETTINGS, Q, migration_cluster
from tests.proxy.conftest import call
from tests.services import Etcd


async def test_dry_run_plans_every_step_and_writes_nothing(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    uris = {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}
    async with migration_cluster(etcd_server.url, uris, clock) as c:
        assert (await call(c.proxy, "PUT", Q))[0] == 201
        messages = [{"body": i} for i in range(10)]
        for _ in range(12):  # 120 messages: three batches of 50
            assert (await call(c.proxy, "POST", f"{Q}/messages", json={"messages": messages}))[0]
        before = await c.placement()
        target = "p2" if before.partition == "p1" else "p1"
        storages = Storages(c.catalog, PinnedClock(clock))
        try:
            migration = await draft(c.catalog, PROJECT, QUEUE, target)
            found = await dry_run(c.catalog, migration, SETTINGS, storages)
        finally:
            await storages.close()
        plan = found.steps
        assert (found.counted, found.messages) == (True, 120)
        assert found.body_bytes == sum(len(str(i)) for i in range(10)) * 12

        assert [s.verb for s in plan] == [
            "prepare_target",
            "copy_queue",
            "copy_batch",
            "catch_up",
            "verify_baseline",
            "freeze_source",
            "catch_up",
            "verify",
            "keep_fence",
            "switch_placement",
            "mark_moved",
            "stop_tracking",
            "move_outbox",
            "purge_source",
        ]
        details = {s.verb: s.detail for s in plan}
        assert "copy 120 messages" in details["copy_batch"]
        assert "marker counter 120" in details["copy_queue"]
        assert details["switch_placement"].startswith("THE POINT OF NO RETURN")
        assert f"epoch {before.epoch + 1}" in details["switch_placement"]
        # Nothing written: no record, the placement as it was, no copy on the target.
        assert await Registry(c.catalog).list() == []
        assert await c.placement() == before
        assert await c.storage(target).transfer.export_queue(PROJECT, QUEUE) is None
        assert await c.storage(before.partition).transfer.fence(PROJECT, QUEUE) is None
