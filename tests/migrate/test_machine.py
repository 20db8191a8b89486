"""The state machine's ways out before the switch, on real etcd and SQLite through the proxy:
cancel (and its refusal after the switch), a divergence caught by verify, a freeze over its
limit aborted and retried, then failed."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import Refused
from catalog.migrations import Migration, Phase
from catalog.records import Placement, PlacementState
from catalog.registry import Registry
from migrate.machine import Hooks
from node.models import QueueDigest
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, QUEUE, MigrationCluster, Q, migration_cluster
from tests.proxy.conftest import call
from tests.services import Etcd

END = (Phase.DONE, Phase.CANCELLED, Phase.FAILED)


async def prepare(c: MigrationCluster) -> tuple[str, str, Placement, QueueDigest]:
    """A queue of 30 messages, 5 of them claimed; its placement and digest before any move."""
    assert (await call(c.proxy, "PUT", Q))[0] == 201
    messages = [{"body": {"n": i}, "ttl": 3600} for i in range(30)]
    assert (await call(c.proxy, "POST", f"{Q}/messages", json={"messages": messages}))[0] == 201
    claim = await call(c.proxy, "POST", f"{Q}/claims?limit=5", json={"ttl": 600, "grace": 60})
    assert claim[0] == 201
    placement = await c.placement()
    source = placement.partition
    digest = await c.storage(source).transfer.digest(PROJECT, QUEUE)
    return source, "p2" if source == "p1" else "p1", placement, digest


def post(c: MigrationCluster, body: Any) -> asyncio.Task[tuple[int, Any, dict[str, str]]]:
    return asyncio.create_task(
        call(c.proxy, "POST", f"{Q}/messages", json={"messages": [{"body": body}]})
    )


async def check_source_authoritative(
    c: MigrationCluster, source: str, target: str, before: Placement
) -> None:
    """The placement as before the move, the source open, nothing left on the target."""
    assert await c.placement() == before
    assert before.state is PlacementState.ACTIVE
    assert await c.storage(source).transfer.fence(PROJECT, QUEUE) is None
    assert await c.storage(target).transfer.export_queue(PROJECT, QUEUE) is None
    assert await c.storage(target).transfer.fence(PROJECT, QUEUE) is None
    status, _, _ = await call(c.proxy, "GET", f"{Q}/stats")
    assert status == 200


def uris(tmp_path: Path) -> dict[str, str]:
    return {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("p1", "p2")}


async def test_cancel_during_the_freeze(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    """Requested while frozen and verified, just before the switch: the switch does not happen."""
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        source, target, before, digest = await prepare(c)
        frozen, gate = asyncio.Event(), asyncio.Event()

        async def before_verify(m: Migration) -> None:
            frozen.set()
            await gate.wait()

        await c.worker(Hooks(before_verify=before_verify), freeze_limit=10.0)
        m = await c.move(target)
        await asyncio.wait_for(frozen.wait(), 10)
        held = post(c, "held")
        await asyncio.sleep(0.1)
        assert not held.done()  # writes wait for the freeze
        assert (await Registry(c.catalog).request_cancel(m.id)).cancel_requested
        gate.set()
        done = await c.wait_for(m.id, *END)
        assert done.phase is Phase.CANCELLED, done.error
        assert (await held)[0] == 201  # on the source, once unfrozen
        await check_source_authoritative(c, source, target, before)
        found = await c.storage(source).transfer.digest(PROJECT, QUEUE)
        assert (found.count, found.claim_ids) == (digest.count + 1, digest.claim_ids)


async def test_cancel_after_the_switch_is_refused(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        source, target, before, digest = await prepare(c)
        switched, gate = asyncio.Event(), asyncio.Event()

        async def reached(m: Migration) -> None:
            if m.phase is Phase.SWITCHED:
                switched.set()
                await gate.wait()

        await c.worker(Hooks(reached=reached))
        m = await c.move(target)
        await asyncio.wait_for(switched.wait(), 10)
        with pytest.raises(Refused):
            await Registry(c.catalog).request_cancel(m.id)
        gate.set()
        assert (await c.wait_for(m.id, *END)).phase is Phase.DONE
        after = await c.placement()
        assert (after.partition, after.epoch) == (target, before.epoch + 1)
        assert await c.storage(target).transfer.digest(PROJECT, QUEUE) == digest


async def test_divergence_is_caught_by_verify(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        source, target, before, digest = await prepare(c)

        async def tamper(m: Migration) -> None:
            copy = c.storage(target).transfer
            found = await copy.export_messages(PROJECT, QUEUE, after_marker=0, limit=100)
            changed = dataclasses.replace(found[3], body={"tampered": True})
            await copy.import_messages(PROJECT, QUEUE, [changed])

        await c.worker(Hooks(before_verify=tamper))
        m = await c.move(target)
        done = await c.wait_for(m.id, *END)
        assert done.phase is Phase.FAILED
        assert done.error is not None and "differs" in done.error and "checksum" in done.error
        await check_source_authoritative(c, source, target, before)
        assert await c.storage(source).transfer.digest(PROJECT, QUEUE) == digest


async def test_freeze_over_its_limit_is_aborted_and_retried(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        source, target, before, digest = await prepare(c)
        held: list[asyncio.Task[tuple[int, Any, dict[str, str]]]] = []

        async def slow_first(m: Migration) -> None:
            if not held:
                held.append(post(c, "held"))
                await asyncio.sleep(0.6)  # past the limit: cut short at 0.2 s

        await c.worker(Hooks(before_verify=slow_first), freeze_limit=0.2)
        m = await c.move(target)
        done = await c.wait_for(m.id, *END)
        assert done.phase is Phase.DONE, done.error
        assert done.progress.freeze_attempts == 1
        assert done.progress.freeze_ms < 200
        assert (await held[0])[0] == 201
        moved = await c.storage(target).transfer.digest(PROJECT, QUEUE)
        assert (moved.count, moved.claim_ids) == (digest.count + 1, digest.claim_ids)


async def test_freeze_always_over_its_limit_fails(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    async with migration_cluster(etcd_server.url, uris(tmp_path), clock) as c:
        source, target, before, digest = await prepare(c)

        async def slow(m: Migration) -> None:
            await asyncio.sleep(0.3)

        await c.worker(Hooks(before_verify=slow), freeze_limit=0.1, freeze_attempts=2)
        m = await c.move(target)
        done = await c.wait_for(m.id, *END)
        assert done.phase is Phase.FAILED
        assert done.error is not None and "aborted 2 times" in done.error
        assert done.progress.freeze_attempts == 2
        await check_source_authoritative(c, source, target, before)
        assert await c.storage(source).transfer.digest(PROJECT, QUEUE) == digest
