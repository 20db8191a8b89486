"""The dead-letter mover: empties each partition's outgoing piles into their dead-letter queues.

A claim takes the dead letters whose dead-letter queue is not on its partition (missing there,
or fenced) into that partition's outgoing pile, each under a hold (`node.storage.deadletters`).
This mover, run by the migration worker because it knows the catalog, finds them and moves
each, exactly once, where the catalog places its dead-letter queue::

    pile (source partition)             dead-letter queue (its placement's partition)
    -----------------------             ---------------------------------------------
    waiting, not sent ──1. copy──────▶  received, held by the message's hold
    2. record: sent
                       ──3. release──▶  released: consumers may take it
    4. discard

Each step is idempotent and the marks say where a batch stands, so a mover that dies anywhere
(kill -9 between any two steps) is resumed by the next pass, its own or another worker's: a
copy not yet recorded as sent is still held, so copying it again finds it and inserts nothing;
once recorded, it is never copied again, whatever a consumer does with the released copy.

A dead-letter queue that is not placed, missing on its partition, or fenced (moving, or a stale
route) leaves its letters waiting for the next pass: nothing is lost, nothing moves twice. One
worker at a time moves a partition's piles: it owns the partition's mover key (`owners/` under
its lease, as a migration is owned).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from itertools import groupby

from catalog.catalog import Catalog
from catalog.errors import CatalogError
from ground.logs import get_logger
from migrate import metrics
from migrate.errors import MigrationError
from migrate.ownership import Ownership
from migrate.storages import Storages
from node.errors import StorageError
from node.models import Outgoing
from node.storage.base import Storage

log = get_logger("migrate.deadletters")


class Mover:
    def __init__(
        self,
        catalog: Catalog,
        storages: Storages,
        ownership: Ownership,
        *,
        interval: float,
        batch: int,
        crash_after: int = 0,
    ) -> None:
        self.catalog = catalog
        self.storages = storages
        self.ownership = ownership
        self.interval = interval
        self.batch = batch
        # A test hook: kill -9 this process right after step `crash_after` (1-4; 0: never).
        self.crash_after = crash_after

    async def run(self) -> None:
        """Pass over every partition every `interval` seconds, until cancelled."""
        while True:
            try:
                await self.pass_once()
            except Exception as exc:  # the next pass tries again; the loop must not end
                log.warning(
                    "dead_letter_pass_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=not isinstance(exc, CatalogError | StorageError | MigrationError),
                )
            await asyncio.sleep(self.interval)

    async def pass_once(self) -> int:
        """One pass: move what the piles of the partitions this worker owns hold; return how
        many letters reached their dead-letter queue."""
        moved = 0
        for partition in await self.catalog.partitions():
            if not partition.storage or not await self.ownership.claim(_key(partition.name)):
                # Another worker's (or none's): its count is that worker's to tell.
                with contextlib.suppress(KeyError):
                    metrics.DEAD_LETTERS_WAITING.remove(partition.name)
                continue
            try:
                moved += await self.empty(partition.name)
            except (CatalogError, StorageError, MigrationError, ValueError) as exc:
                # ValueError: a storage URI no driver opens.
                log.warning(
                    "dead_letter_partition_failed",
                    partition=partition.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
        return moved

    async def empty(self, partition: str) -> int:
        """Move `partition`'s piles batch after batch while whole batches move (a backlog
        drains within one pass; letters left waiting end it)."""
        total = 0
        while (moved := await self.empty_batch(partition)) == self.batch:
            total += moved
        return total + moved

    async def empty_batch(self, partition: str) -> int:
        """Move one batch of `partition`'s piles, dead-letter queue by dead-letter queue."""
        source = await self.storages.of(partition)
        waiting = await source.dead_letters.waiting(limit=self.batch)
        metrics.DEAD_LETTERS_WAITING.labels(partition).set(len(waiting))
        moved = 0
        for (project, queue), letters in groupby(waiting, key=lambda o: (o.project, o.queue)):
            try:
                moved += await self.move(source, project, queue, list(letters))
            except (CatalogError, StorageError, MigrationError) as exc:
                metrics.DEAD_LETTERS_DEFERRED.labels(type(exc).__name__).inc()
                log.info(
                    "dead_letters_deferred",
                    partition=partition,
                    project=project,
                    queue=queue,
                    reason=f"{type(exc).__name__}: {exc}",
                )
        return moved

    async def move(self, source: Storage, project: str, queue: str, letters: list[Outgoing]) -> int:
        """The four steps for letters bound for one dead-letter queue; raises `NotPlaced`, and
        what the storage raises (`QueueDoesNotExist`, `QueueFrozen`, ...) to defer them."""
        placement = await self.catalog.placement(project, queue)
        if placement is None:
            raise NotPlaced(f"queue {queue} of project {project!r} is placed nowhere")
        target = await self.storages.of(placement.partition)
        ids = [o.message.id for o in letters]
        unsent = [o.message for o in letters if not o.sent]
        if unsent:
            self.ownership.check()
            await target.dead_letters.receive(project, queue, unsent)
            self._step(1)
            await source.dead_letters.sent(project, queue, [m.id for m in unsent])
            self._step(2)
        await target.dead_letters.release(project, queue, [o.message for o in letters])
        self._step(3)
        await source.dead_letters.discard(project, queue, ids)
        self._step(4)
        metrics.DEAD_LETTERS_MOVED.inc(len(letters))
        log.info(
            "dead_letters_moved",
            project=project,
            queue=queue,
            partition=placement.partition,
            n=len(letters),
        )
        return len(letters)

    def _step(self, done: int) -> None:
        if done == self.crash_after:
            log.warning("dead_letter_crash_hook", after_step=done)
            os.kill(os.getpid(), signal.SIGKILL)


class NotPlaced(MigrationError):
    """The dead-letter queue has no placement in the catalog (yet): its letters wait."""


def _key(partition: str) -> str:
    """The owner key's name of a partition's mover (`owners/dead-letters.{partition}`)."""
    return f"dead-letters.{partition}"
