"""Copying one queue between two `TransferStore`s: the bulk copy, the catch-up, the stragglers.

Every import is an upsert by id that writes only what differs, so each of these runs again with
no effect once the target holds what the source holds. Markers are never reused, which is what
makes comparing marker ranges sound while the source keeps changing: a message posted after a
source page was read has a marker above that page.

The catch-up follows the source's changes (`TransferStore.changes`) after a cursor: a position
such that the target lacks nothing written before it. A position is only taken as the cursor
once a settle interval has passed between reading it and starting to read the changes after
it, so that a MongoDB write still landing with a stamp below it is seen anyway. A copy that
starts from the first marker notes its cursor before its first batch; a worker that resumes
anywhere else, or finds changes lost, levels the whole queue once instead. Claims are followed
the same way (made, renewed and released claims are changes too), so a round costs what changed
since the last one, not what is live: a queue with ten thousand live claims costs no more to
catch up than one with none.

Subscriptions are few per queue and rarely change: each catch-up levels them whole (upsert what
differs, delete what the source no longer has), the frozen one last of all, so the target ends
with exactly the source's, ids, expiry, options and confirmation kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from migrate.errors import Unmovable
from node.errors import ChangesLost, TransferConflict
from node.models import Message, QueueExport
from node.storage.base import SubscriptionStore, TransferStore

# The source's subscription store, then the target's.
SubscriptionPair = tuple[SubscriptionStore, SubscriptionStore]


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
        *,
        settle: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        subscriptions: SubscriptionPair | None = None,
    ) -> None:
        self.project = project
        self.queue = queue
        self.source = source
        self.target = target
        self.batch = batch
        self.settle = settle
        self.sleep = sleep
        self.subscriptions = subscriptions
        self.cursor: int | None = None  # None: the next catch-up levels the whole queue
        self.arrived = 0  # changes the source recorded during the last catch-up
        self._noted: deque[tuple[float, int]] = deque()  # (monotonic time, source position)

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

    async def track(self, enabled: bool, *, target: bool = True) -> None:
        """Track (or stop tracking) the queue's changes on the source, and on the target too
        unless `target` is False (the bulk copy: the target's changes count from the verify's
        baseline on)."""
        for store in (self.source, self.target) if target else (self.source,):
            if await store.export_queue(self.project, self.queue) is not None:
                await store.track(self.project, self.queue, enabled)

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        if after_marker == 0 and self.cursor is None:
            # A copy from the start: the changes after this position are what it may miss.
            self.cursor = await self._note()
            await self.sleep(self.settle)
            # The claims once, whole, as the messages are copied once: from here on their
            # changes are followed.
            await self.level_claims(None)
        # Rows, not messages: the bodies go across as the JSON text they are stored as.
        page = await self.source.export_rows(
            self.project, self.queue, after_marker=after_marker, limit=limit
        )
        if not page:
            return Batch(0, 0, after_marker)
        copied = await self.target.import_rows(self.project, self.queue, page)
        return Batch(len(page), copied, page[-1].marker)

    async def catch_up(self) -> int:
        """Level the target with the source; the lag: records that had to change. `arrived`
        is then how many changes the source recorded while it ran."""
        lag = await self.copy_queue() + await self.level_subscriptions()
        started = time.monotonic()
        begun = await self._note()
        if self.cursor is not None:
            try:
                lag += await self._follow(self.cursor)
            except ChangesLost:
                self.cursor = None
        if self.cursor is None:
            await self.sleep(self.settle)  # the position just noted becomes a safe cursor
            started = time.monotonic()
            lag += await self.level(0, None) + await self.level_claims(None)
        self._advance(started)
        self.arrived = max(0, await self.source.sequence(self.project, self.queue) - begun)
        return lag

    async def level(self, after: int, upto: int | None) -> int:
        """Level the messages with a marker above `after`, up to `upto` (None: no bound):
        upsert what differs, delete what the source no longer has; the records changed."""
        lag = 0
        while True:
            page = await self.source.export_messages(
                self.project, self.queue, after_marker=after, limit=self.batch
            )
            inside = [m for m in page if upto is None or m.marker <= upto]
            done = len(page) < self.batch or len(inside) < len(page)
            bound = upto if done else inside[-1].marker
            lag += await self._level(inside, await self._target_range(after, bound))
            if done:
                return lag
            after = inside[-1].marker
            await _yield()

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

    # --- following the source's changes ----------------------------------------------------------

    async def _note(self) -> int:
        position = await self.source.sequence(self.project, self.queue)
        self._noted.append((time.monotonic(), position))
        return position

    def _advance(self, started: float) -> None:
        """A catch-up that started at `started` read every change after the cursor: the newest
        position noted a settle interval before that is the cursor now."""
        while self._noted and self._noted[0][0] + self.settle <= started:
            self.cursor = self._noted.popleft()[1]

    async def _follow(self, since: int) -> int:
        """Apply the source's changes after `since` to the target; the records changed."""
        lag = 0
        while True:
            page = await self.source.changes(
                self.project, self.queue, since=since, limit=self.batch
            )
            # Deletes first: FerretDB may hand a deleted message's marker out again.
            if page.removed:
                gone = [r.id for r in page.removed]
                lag += await self.target.delete_messages(self.project, self.queue, gone)
            # Claims before their messages' claim fields: a message never names a claim that
            # the target lacks for longer than one page.
            if page.released:
                lag += await self.target.delete_claims(self.project, self.queue, page.released)
            if page.claims:
                lag += await self.target.import_claims(self.project, self.queue, page.claims)
            if page.messages:
                try:
                    lag += await self.target.import_messages(
                        self.project, self.queue, page.messages
                    )
                except TransferConflict:
                    # The marker's first holder is deleted in a later page: level the span.
                    markers = [m.marker for m in page.messages]
                    lag += await self.level(min(markers) - 1, max(markers))
            if not page.more:
                return lag
            since = page.upto
            await _yield()

    # --- comparing ranges ------------------------------------------------------------------------

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

    async def level_claims(self, ids: Collection[str] | None) -> int:
        """The claims among `ids` (None: all of them) as on the source: upsert what differs,
        delete what the source released; the records changed."""
        wanted = None if ids is None else sorted(ids)
        source = await self.source.export_claims(self.project, self.queue, ids=wanted)
        target = await self.target.export_claims(self.project, self.queue, ids=wanted)
        held = {c.id: c for c in target}
        fresh = [c for c in source if held.get(c.id) != c]
        kept = {c.id for c in source}
        gone = [c.id for c in target if c.id not in kept]
        if gone:
            await self.target.delete_claims(self.project, self.queue, gone)
        if fresh:
            await self.target.import_claims(self.project, self.queue, fresh)
        return len(fresh) + len(gone)

    async def level_subscriptions(self) -> int:
        """The queue's subscriptions at the target as at the source; the records changed."""
        if self.subscriptions is None:
            return 0
        source, target = self.subscriptions
        theirs = await source.export_subscriptions(self.project, self.queue)
        ours = await target.export_subscriptions(self.project, self.queue)
        held = {s.id: s for s in ours}
        fresh = [s for s in theirs if held.get(s.id) != s]
        kept = {s.id for s in theirs}
        gone = [s.id for s in ours if s.id not in kept]
        if gone:
            await target.delete_subscriptions(self.project, self.queue, gone)
        if fresh:
            await target.import_subscriptions(self.project, self.queue, fresh)
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
