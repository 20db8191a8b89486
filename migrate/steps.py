"""A migration's steps: verbs the state machine (`migrate.machine`) runs, each idempotent, so a
worker that died half-way through one resumes by running it again.

`Steps` is the seam. `LiveSteps` acts on the catalog (the placement, by compare-and-swap) and on
the two partitions' `TransferStore`s; `migrate.dryrun.DryRunSteps` is its twin, which only reads
and records what each step would do. The data-moving steps live in `migrate.copy`, the
comparing ones in `migrate.verify`.

What is atomic where: the placement changes only by compare-and-swap on its key, so the switch
happens once however often it is retried. The source's fence is atomic with every write on SQLite;
on MongoDB a write that passed its check just before `freeze` may still land (the machine's settle
interval, its final catch-up and verify account for it; `adopt_stragglers` for a post landing
later still). Nothing else is atomic across the two partitions: every step is written so that
running it again after a partial run converges to the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from catalog.catalog import CAS_ATTEMPTS, Catalog
from catalog.errors import Conflict
from catalog.migrations import Migration, Phase
from catalog.records import Placement, PlacementState, Versioned
from migrate.copy import Batch, Copier, SubscriptionPair
from migrate.errors import Diverged, FenceLeaked, Unmovable
from migrate.verify import Verifier
from node.errors import QueueDoesNotExist
from node.models import Fence, QueueDigest
from node.storage.base import TransferStore
from node.storage.outbox import OutboxStore

# THE POINT OF NO RETURN. Once a migration's record says SWITCHED, the target owns the queue:
# `switch_placement` runs (again, after a worker's death) until the placement names the target,
# a cancel is refused, and undoing the move is a move back.
POINT_OF_NO_RETURN = Phase.SWITCHED


@dataclass(frozen=True, slots=True)
class Move:
    """Which queue goes where, for the steps of one migration."""

    migration: str
    project: str
    queue: str
    source: str
    target: str

    @classmethod
    def of(cls, m: Migration) -> Move:
        return cls(m.id, m.project, m.queue, m.source, m.target)


class Steps(Protocol):
    """Every method is idempotent. Catalog and storage errors pass through (the machine retries);
    `Unmovable` and `Diverged` end the migration."""

    async def prepare_target(self) -> None:
        """Lift a fence an earlier move of this queue away from the target left there."""

    async def copy_queue(self) -> None:
        """The queue at the target as at the source (metadata, created, marker counter raised,
        subscriptions), its changes on the source tracked from now on. Raises `Unmovable` when
        the source has no such queue."""

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        """Copy up to `limit` source messages above `after_marker` (upserts, by id)."""

    async def catch_up(self) -> int:
        """Bring the target level with the source (queue record, subscriptions, messages,
        claims); return the lag: how many records had to change."""

    def arrived(self) -> int:
        """How many changes the source recorded while the last `catch_up` ran."""

    async def verify_baseline(self) -> int:
        """While the source is live: compare the marker ranges either partition changed since
        the last baseline (all of them the first time) and level those that differ, so that the
        freeze's verify compares only what changes after this. Returns the ranges read."""

    async def freeze_source(self, lasts: float) -> None:
        """Placement FROZEN (compare-and-swap), then the source's fence: writes wait from now,
        for `lasts` seconds at most (the fence lifts itself then, should this worker vanish)."""

    async def keep_fence(self, lasts: float) -> bool:
        """The source's fence, if it has held without a gap since `freeze_source`, made to last
        `lasts` seconds from now; False when it lapsed meanwhile. True as well once the
        placement names the target (the switch is done: the fence no longer matters)."""

    async def verify(self) -> QueueDigest:
        """Compare the frozen source with the target, the whole queue (counts, ids, checksums,
        subscriptions), reading only the ranges changed since the baseline; raises `Diverged`
        when they differ, and `FenceLeaked` when posts went on landing on the source after the
        final catch-up."""

    async def switch_placement(self) -> Placement:
        """THE POINT OF NO RETURN: the placement names the target at epoch + 1, ACTIVE."""

    async def mark_moved(self) -> None:
        """The source's fence says "moved": stale routes are sent to look again."""

    async def move_outbox(self) -> int:
        """After the switch: the notifications the source still owes for the queue go to the
        target (upserted by id), then leave the source; return how many arrived. The source's
        deliverers leave a fenced queue's deliveries alone, so each is sent from one side
        only, but for those in flight at the freeze (at least once)."""

    async def unfreeze_source(self) -> None:
        """Abort a freeze: the source's fence lifted, then the placement ACTIVE again."""

    async def stop_tracking(self) -> None:
        """Stop tracking the queue's changes (on the source after a cancel, on the target once
        switched)."""

    async def adopt_stragglers(self, verified_marker: int) -> int:
        """Copy to the target what landed on the source after verify (MongoDB's late posts)."""

    async def purge_source(self, limit: int) -> int:
        """Drop up to `limit` of the source's records; 0 when nothing is left (then the
        tombstone is lifted too, so the queue's name is free on the source again)."""

    async def remove_partial_copy(self, limit: int) -> int:
        """Drop up to `limit` of the target's records; 0 when nothing is left."""


class LiveSteps:
    def __init__(
        self,
        move: Move,
        catalog: Catalog,
        source: TransferStore,
        target: TransferStore,
        *,
        batch: int = 500,
        settle: float = 0.05,
        pinned: Callable[[], AbstractContextManager[None]] = nullcontext,
        clock: Callable[[], float] = time.time,
        subscriptions: SubscriptionPair | None = None,
        outboxes: tuple[OutboxStore, OutboxStore] | None = None,  # (source's, target's)
    ) -> None:
        self.move = move
        self.catalog = catalog
        self.source = source
        self.target = target
        self.outboxes = outboxes
        self.pinned = pinned
        self.subscriptions = subscriptions
        self.copier = Copier(
            move.project,
            move.queue,
            source,
            target,
            batch,
            settle=settle,
            subscriptions=subscriptions,
        )
        self.verifier = Verifier(
            self.copier,
            pinned=pinned,
            source_name=move.source,
            target_name=move.target,
            clock=clock,
        )
        self._key = catalog.keys.placement(move.project, move.queue)

    async def prepare_target(self) -> None:
        m = self.move
        if await self.target.fence(m.project, m.queue) is not None:
            await self._guard_not_on(m.target, "lift a fence on")
            await self.target.unfreeze(m.project, m.queue)

    async def copy_queue(self) -> None:
        await self.copier.copy_queue()
        await self.copier.level_subscriptions()
        await self.copier.track(True, target=False)

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        return await self.copier.copy_batch(after_marker, limit)

    async def catch_up(self) -> int:
        return await self.copier.catch_up()

    def arrived(self) -> int:
        return self.copier.arrived

    async def verify_baseline(self) -> int:
        assert self.copier.cursor is not None, "a catch-up sets the cursor"
        return await self.verifier.refresh(self.copier.cursor)

    async def freeze_source(self, lasts: float) -> None:
        m = self.move

        def frozen(p: Placement) -> Placement | None:
            if p.partition != m.source:
                raise Unmovable(f"queue {m.queue} is placed on {p.partition}, not {m.source}")
            if p.state is PlacementState.FROZEN and p.migration != m.migration:
                raise Unmovable(f"queue {m.queue} is frozen by migration {p.migration}")
            if p.state is PlacementState.FROZEN:
                return None
            return dataclasses.replace(p, state=PlacementState.FROZEN, migration=m.migration)

        await self._update_placement(frozen)
        await self.source.freeze(m.project, m.queue, Fence.FROZEN, lasts=lasts)

    async def keep_fence(self, lasts: float) -> bool:
        m = self.move
        placement = await self.catalog.placement(m.project, m.queue)
        if placement is not None and placement.partition == m.target:
            return True
        return await self.source.extend(m.project, m.queue, lasts)

    async def verify(self) -> QueueDigest:
        m = self.move
        src_queue, dst_queue = await asyncio.gather(  # both at once: the freeze is waiting
            self.source.export_queue(m.project, m.queue),
            self.target.export_queue(m.project, m.queue),
        )
        if src_queue is None or dst_queue is None:
            missing = m.source if src_queue is None else m.target
            raise Diverged(f"verify: queue {m.queue} is missing on {missing}")
        if src_queue.metadata != dst_queue.metadata:
            raise Diverged(f"verify: the metadata of queue {m.queue} differs")
        if dst_queue.counter < src_queue.counter:
            # The final catch-up raised the target's counter to the source's: the source's went
            # on since, so posts still reserve markers there. Not the copy's fault: a retry.
            raise FenceLeaked(
                f"the source's marker counter rose to {src_queue.counter} while frozen"
                f" (the copy has {dst_queue.counter})"
            )
        await self._verify_subscriptions()
        return await self.verifier.verify()

    async def _verify_subscriptions(self) -> None:
        if self.subscriptions is None:
            return
        m = self.move
        source, target = self.subscriptions
        with self.pinned():  # one instant on both sides, so nothing expires in between
            theirs = await source.export_subscriptions(m.project, m.queue)
            ours = await target.export_subscriptions(m.project, m.queue)
        if theirs != ours:
            raise Diverged(f"verify: the subscriptions of queue {m.queue} differ")

    async def switch_placement(self) -> Placement:
        """THE POINT OF NO RETURN: one compare-and-swap moves the queue to the target."""
        m = self.move

        def switched(p: Placement) -> Placement | None:
            if p.partition == m.target and p.migration == m.migration:
                return None  # a switch that timed out and committed anyway, or a resume
            if p.partition != m.source or p.state is not PlacementState.FROZEN:
                raise Unmovable(f"queue {m.queue} is {p.state} on {p.partition}: cannot switch")
            # `migration` stays on the placement: it says which move set this epoch.
            return dataclasses.replace(
                p, partition=m.target, epoch=p.epoch + 1, state=PlacementState.ACTIVE
            )

        return await self._update_placement(switched)

    async def mark_moved(self) -> None:
        await self.source.freeze(self.move.project, self.move.queue, Fence.MOVED)

    async def move_outbox(self) -> int:
        if self.outboxes is None:
            return 0
        m, (source, target) = self.move, self.outboxes
        await self._guard_not_on(m.source, "move the outbox away from")
        owed = await source.export_outbox(m.project, m.queue)
        arrived = await target.import_outbox(m.project, m.queue, owed)
        await source.drop_outbox(m.project, m.queue)
        return arrived

    async def unfreeze_source(self) -> None:
        m = self.move
        # The fence first: requests held by proxies are released by the placement's change,
        # and must find the source open when they are sent again.
        if await self.source.fence(m.project, m.queue) == Fence.FROZEN:
            await self.source.unfreeze(m.project, m.queue)

        def active(p: Placement) -> Placement | None:
            if p.state is not PlacementState.FROZEN or p.migration != m.migration:
                return None
            return dataclasses.replace(p, state=PlacementState.ACTIVE, migration=None)

        await self._update_placement(active, missing_ok=True)

    async def stop_tracking(self) -> None:
        with contextlib.suppress(QueueDoesNotExist):  # dropped meanwhile: nothing is tracked
            await self.copier.track(False)

    async def adopt_stragglers(self, verified_marker: int) -> int:
        await self._guard_not_on(self.move.source, "adopt stragglers from")
        return await self.copier.adopt_stragglers(verified_marker)

    async def purge_source(self, limit: int) -> int:
        m = self.move
        await self._guard_not_on(m.source, "purge")
        gone = await self.source.drop(m.project, m.queue, limit=limit)
        if gone == 0:
            await self.source.unfreeze(m.project, m.queue)
        return gone

    async def remove_partial_copy(self, limit: int) -> int:
        m = self.move
        await self._guard_not_on(m.target, "remove the copy on")
        return await self.target.drop(m.project, m.queue, limit=limit)

    # --- the placement ---------------------------------------------------------------------------

    async def _guard_not_on(self, partition: str, what: str) -> None:
        """Never drop (or open) the copy that the placement names: it is the queue."""
        placement = await self.catalog.placement(self.move.project, self.move.queue)
        if placement is not None and placement.partition == partition:
            raise Unmovable(f"refusing to {what} {partition}: queue {self.move.queue} lives there")

    async def _update_placement(
        self, change: Callable[[Placement], Placement | None], *, missing_ok: bool = False
    ) -> Placement:
        """Compare-and-swap `change(placement)` until it sticks; None from `change` means the
        placement is already as wanted."""
        for _ in range(CAS_ATTEMPTS):
            found: Versioned | None = await self.catalog.store.get(self._key)
            if found is None:
                if missing_ok:
                    return Placement(self.move.project, self.move.queue, self.move.source)
                raise Unmovable(f"queue {self.move.queue} has no placement (it was deleted)")
            current = Placement.from_json(found.value)
            updated = change(current)
            if updated is None:
                return current
            try:
                await self.catalog.store.replace(self._key, updated.to_json(), found.mod_revision)
            except Conflict:
                continue
            return updated
        raise Conflict(self._key)
