"""Drain and rebalance end to end: the admin API plans and starts the migrations, real workers
run them on real etcd and SQLite, and clients keep using the queues through the proxy. Nothing is
lost or duplicated, claims survive, and the partitions end where the plan said."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from catalog.migrations import Migration, Phase
from catalog.planner import Move, admit
from catalog.records import Placement, PlacementState
from catalog.registry import MigrationLimits, Registry
from tests.conftest import FakeClock
from tests.migrate.harness import PROJECT, Client, MigrationCluster, migration_cluster
from tests.proxy.cluster import ADMIN
from tests.proxy.conftest import call
from tests.services import Etcd

PARTITIONS = ("p1", "p2", "p3")
SEED = -1  # the "producer" of the messages a queue starts with
# Worker settings: a short purge grace (real seconds: the cleanup waits it out on the fake clock,
# which stands still) and rate limits that do not slow a test down.
WORKER: dict[str, Any] = {"purge_grace": 0.3, "copy_rate": 100_000.0, "purge_rate": 100_000.0}

MessageKey = tuple[str, str]  # (queue, message id)


def sqlite_uris(tmp_path: Path) -> dict[str, str]:
    return {name: f"sqlite:///{tmp_path}/{name}.db" for name in PARTITIONS}


async def admin(c: MigrationCluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, answer, _ = await call(c.proxy, method, path, json=body, headers=ADMIN)
    return status, answer


async def pin(c: MigrationCluster, partition: str | None) -> None:
    """New queues of PROJECT go to `partition` (anywhere, for None), once the proxy knows."""
    cache = c.cluster.state().router.cache
    if partition is None:
        await c.catalog.unpin(PROJECT)
    else:
        await c.catalog.pin(PROJECT, partition)
    async with asyncio.timeout(5):
        while (p.partition if (p := cache.pins.get(PROJECT)) else None) != partition:
            await cache.changed.wait()


@dataclass
class Seeds:
    """What the queues started with: every message (acknowledged, as the load's are), and each
    queue's claim on some of them."""

    acked: dict[MessageKey, tuple[int, int]] = field(default_factory=dict)
    claims: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # queue: id, messages


async def create_queues(
    c: MigrationCluster, names: list[str], seeds: Seeds, *, messages: int, claimed: int
) -> None:
    """Each queue with `messages` messages, the first `claimed` of them held by one long claim."""
    for name in names:
        q = f"/v2/queues/{name}"
        assert (await call(c.proxy, "PUT", q))[0] == 201
        posted = [{"body": {"p": SEED, "n": i}, "ttl": 3600} for i in range(messages)]
        status, body, _ = await call(c.proxy, "POST", f"{q}/messages", json={"messages": posted})
        assert status == 201
        ids = [href.rsplit("/", 1)[1] for href in body["resources"]]
        seeds.acked.update({(name, i): (SEED, n) for n, i in enumerate(ids)})
        if claimed:
            claim = {"ttl": 3000, "grace": 60}
            status, body, _ = await call(c.proxy, "POST", f"{q}/claims?limit={claimed}", json=claim)
            assert status == 201 and len(body["messages"]) == claimed
            claim_id = body["messages"][0]["href"].split("claim_id=")[1]
            seeds.claims[name] = (claim_id, ids[:claimed])


async def placements(c: MigrationCluster, names: list[str]) -> dict[str, Placement]:
    found = {}
    for name in names:
        placement = await c.catalog.placement(PROJECT, name)
        assert placement is not None
        found[name] = placement
    return found


async def held(c: MigrationCluster, names: list[str]) -> dict[MessageKey, tuple[int, int]]:
    """Every message of the queues, read from the storage of the partition that owns each; no
    other partition holds any copy of them (moved-away sources purged, tombstones lifted)."""
    found: dict[MessageKey, tuple[int, int]] = {}
    for name, placement in (await placements(c, names)).items():
        storage = c.storage(placement.partition)
        messages = await storage.transfer.export_messages(
            PROJECT, name, after_marker=0, limit=100_000
        )
        assert len({m.id for m in messages}) == len(messages), f"{name}: a message held twice"
        found.update({(name, m.id): (m.body["p"], m.body["n"]) for m in messages})
        for other in set(c.cluster.partitions) - {placement.partition}:
            transfer = c.storage(other).transfer
            assert await transfer.export_queue(PROJECT, name) is None, f"{name} left on {other}"
            assert await transfer.fence(PROJECT, name) is None, f"{name} fenced on {other}"
    return found


async def check_claims(c: MigrationCluster, seeds: Seeds) -> None:
    """Each claim is still there, through the proxy, on the same messages."""
    for name, (claim_id, ids) in seeds.claims.items():
        status, claim, _ = await call(c.proxy, "GET", f"/v2/queues/{name}/claims/{claim_id}")
        assert status == 200, f"{name}: claim {claim_id} gave {status}"
        assert [m["href"].split("?")[0].rsplit("/", 1)[1] for m in claim["messages"]] == ids


# --- clients -------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """On each of `queues`, one producer posting numbered messages and `consumers` consumers
    claiming and deleting them, through the proxy; everything acknowledged is recorded."""

    proxy: Client
    queues: list[str]
    consumers: int = 2
    pause: float = 0.02
    acked: dict[MessageKey, tuple[int, int]] = field(default_factory=dict)
    consumed: list[tuple[int, MessageKey, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    slowest: float = 0.0
    _stop_producing: asyncio.Event = field(default_factory=asyncio.Event)
    _producers: list[asyncio.Task[None]] = field(default_factory=list)
    _consumers: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._producers = [
            asyncio.create_task(self._produce(i, q)) for i, q in enumerate(self.queues)
        ]
        self._consumers = [
            asyncio.create_task(self._consume(i * self.consumers + j, q))
            for i, q in enumerate(self.queues)
            for j in range(self.consumers)
        ]

    async def finish(self) -> None:
        """Stop producing, then consume until every queue is empty but for claimed messages."""
        self._stop_producing.set()
        await asyncio.gather(*self._producers)
        await asyncio.gather(*self._consumers)

    async def _call(self, method: str, path: str, client: str, json: Any = None) -> tuple[int, Any]:
        headers = {"Client-ID": client, "X-Project-ID": PROJECT}
        started = time.monotonic()
        async with self.proxy.request(method, path, json=json, headers=headers) as resp:
            body = await resp.json() if resp.status in (200, 201) else await resp.text()
        self.requests += 1
        self.slowest = max(self.slowest, time.monotonic() - started)
        return resp.status, body

    async def _produce(self, producer: int, queue: str) -> None:
        client = str(uuid.uuid4())
        n = 0
        while not self._stop_producing.is_set():
            message = {"body": {"p": producer, "n": n}, "ttl": 3600}
            path = f"/v2/queues/{queue}/messages"
            status, body = await self._call("POST", path, client, {"messages": [message]})
            if status == 201:
                self.acked[(queue, body["resources"][0].rsplit("/", 1)[1])] = (producer, n)
            else:
                self.errors.append(f"producer {producer}: POST gave {status}: {body}")
            n += 1
            await asyncio.sleep(self.pause)

    async def _consume(self, consumer: int, queue: str) -> None:
        client = str(uuid.uuid4())
        idle = 0
        while True:
            path = f"/v2/queues/{queue}/claims?limit=5"
            status, body = await self._call("POST", path, client, {"ttl": 300, "grace": 60})
            if status == 204:
                idle += 1
                if self._stop_producing.is_set() and idle > 20:
                    return  # drained
                await asyncio.sleep(self.pause)
                continue
            if status != 201:
                self.errors.append(f"consumer {consumer}: claim gave {status}: {body}")
                await asyncio.sleep(self.pause)
                continue
            idle = 0
            for message in body["messages"]:
                href = message["href"]
                status, text = await self._call("DELETE", href, client)
                if status != 204:
                    self.errors.append(f"consumer {consumer}: DELETE gave {status}: {text}")
                    continue
                key = (queue, href.split("?")[0].rsplit("/", 1)[1])
                self.consumed.append((consumer, key, message["body"]["p"], message["body"]["n"]))


def check_accounting(
    acked: dict[MessageKey, tuple[int, int]],
    consumed: list[tuple[int, MessageKey, int, int]],
    remaining: dict[MessageKey, tuple[int, int]],
) -> None:
    """Every acknowledged message consumed exactly once or still held exactly once, nothing else
    consumed or held, and each consumer got each producer's messages in the order posted."""
    consumed_keys = [key for _, key, _, _ in consumed]
    assert len(consumed_keys) == len(set(consumed_keys)), "a message was consumed twice"
    assert not set(consumed_keys) & set(remaining), "a consumed message is still held"
    lost = set(acked) - set(consumed_keys) - set(remaining)
    invented = (set(consumed_keys) | set(remaining)) - set(acked)
    assert not lost and not invented, f"{len(lost)} messages lost, {len(invented)} invented"
    for _, key, p, n in consumed:
        assert acked[key] == (p, n)
    for key, value in remaining.items():
        assert acked[key] == value
    seen: dict[tuple[int, str, int], int] = {}
    for consumer, (queue, _), p, n in consumed:
        order = (consumer, queue, p)
        assert n > seen.get(order, -1), f"consumer {consumer} got {queue}'s {p} out of order"
        seen[order] = n


# --- admission ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_admission_counts_a_migration_until_its_switch_as_the_registry_does() -> None:
    """A migration cleaning up its source takes none of the partitions' room: the next move off
    (or onto) them is admitted, as `Registry.create` would accept it."""
    moves = [Move("proj", "b", "p1", "p2", ""), Move("proj", "c", "p3", "p2", "")]
    for phase in Phase:
        if phase.terminal:
            continue
        m = Migration("m", "proj", "a", "p1", "p2", phase=phase)
        expected = [] if phase.cancellable else ["b"]  # b, then c is one too many onto p2
        assert [x.queue for x in admit(moves, [m], MigrationLimits())] == expected, phase


# --- drain ---------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_drain_counts_a_queue_past_its_switch_where_it_goes(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    """A migration saved SWITCHED no longer holds its partitions' room, so the next move off
    starts while its placement may still name the source: the plan counts it at its target."""
    async with migration_cluster(etcd_server.url, sqlite_uris(tmp_path), clock) as c:
        await pin(c, "p1")
        await create_queues(c, ["a", "b", "c", "d"], Seeds(), messages=1, claimed=0)
        status, first = await admin(c, "POST", "/admin/partitions/p1/drain")
        assert status == 200
        [x] = first["created"]
        assert (x["queue"], x["target"]) == ("a", "p2")
        registry = Registry(c.catalog)
        for phase in (Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED):
            stored = await registry.get(x["id"])
            await registry.save(stored, stored.migration.to(phase, clock()))
        # (A worker switches the placement right after saving SWITCHED; this one has not yet.)
        assert (await placements(c, ["a"]))["a"].partition == "p1"

        status, second = await admin(c, "POST", "/admin/partitions/p1/drain")
        assert status == 200 and second["remaining"] == 4
        assert [(m["queue"], m["to"]) for m in second["planned"]] == [
            ("b", "p3"),
            ("c", "p2"),
            ("d", "p3"),
        ]
        [y] = second["created"]
        assert (y["queue"], y["target"]) == ("b", "p3")
        assert [m["id"] for m in second["moving"]] == [x["id"], y["id"]]


@dataclass
class Drained:
    calls: int = 0
    created: set[str] = field(default_factory=set)  # migration ids
    most_moving: int = 0  # the most migrations off the partition at once (all but one switched)


async def drain(c: MigrationCluster, name: str, within: float) -> Drained:
    """Call drain as `marconi drain --wait` does, until the partition owns nothing and nothing is
    moving off it; stop at the first migration that ended other than DONE."""
    registry = Registry(c.catalog)
    drained = Drained()
    following: set[str] = set()
    async with asyncio.timeout(within):
        while True:
            status, report = await admin(c, "POST", f"/admin/partitions/{name}/drain")
            assert status == 200, report
            drained.calls += 1
            assert report["state"] == "draining" and report["cancelled"] == []
            drained.created |= {m["id"] for m in report["created"]}
            moving = {m["id"] for m in report["moving"]}
            drained.most_moving = max(drained.most_moving, len(moving))
            unswitched = [m for m in report["moving"] if Phase(m["phase"]).cancellable]
            assert len(unswitched) <= 1, unswitched  # one outgoing migration until its switch
            for ended in following - moving:
                last = (await registry.get(ended)).migration
                assert last.phase is Phase.DONE, (last.phase, last.error)
            following = moving
            if not report["remaining"] and not moving:
                return drained
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_drain_under_load_empties_the_partition(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    names = [f"q{i:02d}" for i in range(50)]
    busy = names[::10]  # a handful the clients keep using while the partition drains
    async with migration_cluster(etcd_server.url, sqlite_uris(tmp_path), clock) as c:
        seeds = Seeds()
        await pin(c, "p1")
        await create_queues(c, names, seeds, messages=4, claimed=2)
        await pin(c, None)
        before = await placements(c, names)
        assert {p.partition for p in before.values()} == {"p1"}
        for worker in ("w1", "w2"):
            await c.worker(name=worker, **WORKER)

        traffic = Traffic(c.proxy, busy)
        traffic.start()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        drained = await drain(c, "p1", within=45)
        drained_in = time.monotonic() - started
        await asyncio.sleep(0.2)  # the clients go on, on the new owners
        await traffic.finish()

        # p1 owns nothing, nothing references it: it can go.
        status, body = await admin(c, "DELETE", "/admin/partitions/p1")
        assert status == 204, body
        migrations = await Registry(c.catalog).list()
        assert len(migrations) == len(names) and {m.id for m in migrations} == drained.created
        # The next queue starts moving once the last one switched, not when its source is purged.
        assert drained.most_moving > 1
        assert {(m.source, m.phase) for m in migrations} == {("p1", Phase.DONE)}
        assert sorted(m.queue for m in migrations) == names

        # Every queue moved once, to the receiver with fewer queues at the time.
        after = await placements(c, names)
        for name in names:
            assert after[name].partition in ("p2", "p3")
            assert after[name].epoch == before[name].epoch + 1
            assert after[name].state is PlacementState.ACTIVE
        counts = Counter(p.partition for p in after.values())
        assert abs(counts["p2"] - counts["p3"]) <= 1, counts

        # The clients: no errors, bounded waits, enough done; exact accounting.
        assert traffic.errors == []
        assert traffic.slowest < 1.5, f"a client waited {traffic.slowest:.2f}s"
        assert len(traffic.acked) > 100 and len(traffic.consumed) > 50
        remaining = await held(c, names)
        check_accounting({**seeds.acked, **traffic.acked}, traffic.consumed, remaining)
        claimed = {(name, i) for name, (_, ids) in seeds.claims.items() for i in ids}
        assert claimed <= set(remaining)  # no consumer got a claimed message
        await check_claims(c, seeds)
        print(
            f"\ndrain of {len(names)} queues: {drained_in:.1f}s, {drained.calls} drain calls "
            f"(at most {drained.most_moving} moving at once); "
            f"{traffic.requests} client requests, slowest {traffic.slowest * 1000:.0f} ms; "
            f"freeze max {max(m.progress.freeze_ms for m in migrations):.0f} ms; "
            f"spread {dict(sorted(counts.items()))}"
        )


# --- rebalance -----------------------------------------------------------------------------------


async def active(c: MigrationCluster) -> list[Migration]:
    return [m for m in await Registry(c.catalog).list() if not m.phase.terminal]


@pytest.mark.slow
async def test_rebalance_of_a_skewed_cluster(
    etcd_server: Etcd, tmp_path: Path, clock: FakeClock
) -> None:
    layout = {"p1": 30, "p2": 2, "p3": 1}  # equal weights: 11 each is the mean
    tolerance = 0.1
    async with migration_cluster(etcd_server.url, sqlite_uris(tmp_path), clock) as c:
        seeds = Seeds()
        names: list[str] = []
        for partition, count in layout.items():
            mine = [f"{partition}-q{i:02d}" for i in range(count)]
            await pin(c, partition)
            # As many messages in every queue, so a queue's cost is the same by any measure.
            await create_queues(c, mine, seeds, messages=3, claimed=1)
            names += mine
        await pin(c, None)
        before = await placements(c, names)
        assert Counter(p.partition for p in before.values()) == layout
        for worker in ("w1", "w2"):
            await c.worker(name=worker, **WORKER)

        # A dry run plans, and changes nothing.
        request = {"dry_run": True, "max_moves": 50, "tolerance": tolerance}
        status, plan = await admin(c, "POST", "/admin/rebalance", request)
        assert status == 200, plan
        assert plan["dry_run"] is True and plan["created"] == []
        assert plan["measured"] == ["queues", "messages"]
        assert plan["balanced"] is True  # once the plan is carried out
        assert {m["from"] for m in plan["plan"]} == {"p1"}
        assert {s["partition"]: s["queues"] for s in plan["loads"]} == layout
        mean = len(names) / len(layout)
        planned = {s["partition"]: s["queues"] for s in plan["after"]}
        assert all(abs(planned[p] - mean) <= tolerance * mean for p in layout), planned
        assert len(plan["plan"]) == layout["p1"] - planned["p1"]
        await asyncio.sleep(0.3)  # the workers would have started by now
        assert await Registry(c.catalog).list() == []
        assert await placements(c, names) == before

        # For real: call until the plan is empty and nothing moves.
        started = time.monotonic()
        calls = 0
        async with asyncio.timeout(45):
            while True:
                request = {"max_moves": 50, "tolerance": tolerance}
                status, report = await admin(c, "POST", "/admin/rebalance", request)
                assert status == 200, report
                calls += 1
                if not report["plan"] and not await active(c):
                    break
                await asyncio.sleep(0.05)
        balanced_in = time.monotonic() - started
        assert report["balanced"] is True

        migrations = await Registry(c.catalog).list()
        assert {m.phase for m in migrations} == {Phase.DONE}
        assert len(migrations) == len(plan["plan"]) and {m.source for m in migrations} == {"p1"}
        after = await placements(c, names)
        counts = Counter(p.partition for p in after.values())
        assert counts == planned
        for partition in layout:
            assert abs(counts[partition] - mean) <= tolerance * mean, counts
        moved = {m.queue for m in migrations}
        for name in names:
            epoch = before[name].epoch + (name in moved)
            assert (after[name].epoch, after[name].state) == (epoch, PlacementState.ACTIVE)

        check_accounting(seeds.acked, [], await held(c, names))
        await check_claims(c, seeds)
        print(
            f"\nrebalance: {len(migrations)} moves in {balanced_in:.1f}s, {calls} calls; "
            f"spread {dict(sorted(counts.items()))}"
        )
