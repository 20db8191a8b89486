"""Copying one queue between two `TransferStore`s: the bulk copy, the catch-up, the stragglers.

Every import is an upsert by id that writes only what differs, so each of these runs again with
no effect once the target holds what the source holds. Markers are never reused, which is what
makes the catch-up's comparison by marker range sound while the source keeps changing: a message
posted after a source page was read has a marker above that page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from migrate.errors import Unmovable
from node.models import Message, QueueExport
from node.storage.base import TransferStore


@dataclass(frozen=True, slots=True)
class Batch:
    read: int  # messages exported from the source
    copied: int  # of those, how many the target did not already hold as they are
    marker: int  # the highest marker read: the next batch starts after it


class Copier:
    def __init__(
        self,
        project: str,
        queue: str,
        source: TransferStore,
        target: TransferStore,
        batch: int,
    ) -> None:
        self.project = project
        self.queue = queue
        self.source = source
        self.target = target
        self.batch = batch

    async def copy_queue(self) -> int:
        """The queue's record at the target as at the source; 1 if anything changed."""
        export = await self.source.export_queue(self.project, self.queue)
        if export is None:
            raise Unmovable(f"queue {self.queue} does not exist on the source")
        held = await self.target.export_queue(self.project, self.queue)
        if held is not None and _holds(held, export):
            return 0
        await self.target.import_queue(self.project, self.queue, export)
        return 1

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        page = await self.source.export_messages(
            self.project, self.queue, after_marker=after_marker, limit=limit
        )
        if not page:
            return Batch(0, 0, after_marker)
        copied = await self.target.import_messages(self.project, self.queue, page)
        return Batch(len(page), copied, page[-1].marker)

    async def catch_up(self) -> int:
        """Level the target with the source; the lag: records that had to change."""
        lag = await self.copy_queue()
        after = 0
        while True:
            page = await self.source.export_messages(
                self.project, self.queue, after_marker=after, limit=self.batch
            )
            upper = page[-1].marker if len(page) == self.batch else None
            lag += await self._level(page, await self._target_range(after, upper))
            if upper is None:
                break
            after = upper
            await _yield()
        return lag + await self._level_claims()

    async def adopt_stragglers(self, verified_marker: int) -> int:
        """Copy the source's messages above `verified_marker` (posts that reserved their markers
        before the freeze and landed after verify); their markers are at or below the counter the
        target continued from, so they take no marker the target has given out."""
        adopted = 0
        after = verified_marker
        while (batch := await self.copy_batch(after, self.batch)).read:
            adopted += batch.copied
            after = batch.marker
        return adopted

    async def _target_range(self, after: int, upper: int | None) -> list[Message]:
        """The target's messages with a marker above `after`, up to `upper` (None: no bound)."""
        found: list[Message] = []
        while True:
            page = await self.target.export_messages(
                self.project, self.queue, after_marker=after, limit=self.batch
            )
            inside = [m for m in page if upper is None or m.marker <= upper]
            found += inside
            if len(page) < self.batch or len(inside) < len(page):
                return found
            after = page[-1].marker
            await _yield()

    async def _level(self, source: Sequence[Message], target: Sequence[Message]) -> int:
        """One marker range: upsert what differs, delete what the source no longer has."""
        held = {m.id: m for m in target}
        fresh = [m for m in source if held.get(m.id) != m]
        kept = {m.id for m in source}
        gone = [m.id for m in target if m.id not in kept]
        if gone:
            await self.target.delete_messages(self.project, self.queue, gone)
        if fresh:
            await self.target.import_messages(self.project, self.queue, fresh)
        return len(fresh) + len(gone)

    async def _level_claims(self) -> int:
        """The claims: upsert what differs, delete what the source released."""
        source = await self.source.export_claims(self.project, self.queue)
        target = await self.target.export_claims(self.project, self.queue)
        held = {c.id: c for c in target}
        fresh = [c for c in source if held.get(c.id) != c]
        kept = {c.id for c in source}
        gone = [c.id for c in target if c.id not in kept]
        if gone:
            await self.target.delete_claims(self.project, self.queue, gone)
        if fresh:
            await self.target.import_claims(self.project, self.queue, fresh)
        return len(fresh) + len(gone)


def _holds(held: QueueExport, export: QueueExport) -> bool:
    """The target's queue record already is the source's (its counter may have gone further)."""
    same = (held.metadata, held.created) == (export.metadata, export.created)
    return same and held.counter >= export.counter


async def _yield() -> None:
    """Let the rest of the worker run between batches (its lease keeper above all): SQLite calls
    run on the loop's thread and never suspend, so a long catch-up would otherwise hold the loop
    for its whole length and the worker's lease could expire meanwhile."""
    await asyncio.sleep(0)
