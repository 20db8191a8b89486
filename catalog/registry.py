"""Migration records in the catalog: create (with the limits), read, save by compare-and-swap."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bson import ObjectId

from catalog.catalog import Catalog
from catalog.errors import Conflict, NotFound, Refused
from catalog.migrations import Migration, Phase
from catalog.records import Versioned


@dataclass(frozen=True, slots=True)
class MigrationLimits:
    outgoing_per_partition: int = 1
    incoming_per_partition: int = 1
    cooldown: float = 300.0  # seconds before the same queue may move again


@dataclass(frozen=True, slots=True)
class Stored:
    """A migration with the revision a compare-and-swap save needs."""

    migration: Migration
    revision: int


class Registry:
    def __init__(
        self,
        catalog: Catalog,
        limits: MigrationLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.store = catalog.store
        self.keys = catalog.keys
        self.limits = limits or MigrationLimits()
        self.clock = clock

    async def create(self, project: str, queue: str, target: str) -> Migration:
        """Record a new migration of `project/queue` to `target`, or refuse it (`Refused`)."""
        source, refusals = await self.refusals(project, queue, target)
        if refusals:
            raise Refused(refusals[0])
        now = self.clock()
        migration = Migration(
            id=str(ObjectId()),
            project=project,
            queue=queue,
            source=source,
            target=target,
            created=now,
            updated=now,
        )
        created, _ = await self.store.create(self.keys.migration(migration.id), migration.to_json())
        if not created:
            raise Conflict(f"migration {migration.id} exists")
        return migration

    async def refusals(self, project: str, queue: str, target: str) -> tuple[str, list[str]]:
        """The partition `project/queue` would move from, and every reason a migration of it to
        `target` would be refused now (none: it would be created). Writes nothing. Raises
        `NotFound` for a queue not placed or a partition that does not exist."""
        placement = await self.catalog.placement(project, queue)
        if placement is None:
            raise NotFound(f"queue {queue} of project {project or '_'} is not placed")
        source = placement.partition
        partitions = {p.name: p for p in await self.catalog.partitions()}
        if target not in partitions:
            raise NotFound(f"partition {target} does not exist")
        refusals = []
        if not partitions[target].storage or not partitions[source].storage:
            refusals.append("both partitions need a storage URI (marconi partitions set --storage)")
        if source == target:
            refusals.append(f"queue {queue} is already on {target}")
        existing = await self.list()
        refusals += self._limits(existing, project, queue, source, target, self.clock())
        return source, refusals

    def _limits(
        self,
        existing: list[Migration],
        project: str,
        queue: str,
        source: str,
        target: str,
        now: float,
    ) -> list[str]:
        refusals = []
        active = [m for m in existing if not m.phase.terminal]
        if any((m.project, m.queue) == (project, queue) for m in active):
            refusals.append(f"queue {queue} is already moving")
        recent = [
            m
            for m in existing
            if (m.project, m.queue) == (project, queue)
            and m.phase is Phase.DONE
            and now - m.updated < self.limits.cooldown
        ]
        if recent:
            refusals.append(f"queue {queue} moved less than {self.limits.cooldown:.0f}s ago")
        # Partition limits count moves until their switch: the copy and the freeze are the heavy
        # part; a switched migration only purges its source, slowly, after a grace period.
        moving = [m for m in active if m.phase.cancellable]
        if sum(m.source == source for m in moving) >= self.limits.outgoing_per_partition:
            refusals.append(f"partition {source} already has an outgoing migration")
        if sum(m.target == target for m in moving) >= self.limits.incoming_per_partition:
            refusals.append(f"partition {target} already has an incoming migration")
        return refusals

    async def partition_in_use(self, name: str) -> bool:
        """Whether an unfinished migration still reads from or writes to partition `name`."""
        return any(not m.phase.terminal and name in (m.source, m.target) for m in await self.list())

    async def get(self, migration_id: str) -> Stored:
        found = await self.store.get(self.keys.migration(migration_id))
        if found is None:
            raise NotFound(f"migration {migration_id} does not exist")
        return _stored(found)

    async def list(self) -> list[Migration]:
        snapshot = await self.store.snapshot(self.keys.migrations)
        migrations = [_stored(v).migration for v in snapshot.items]
        return sorted(migrations, key=lambda m: (m.created, m.id))

    async def save(self, stored: Stored, migration: Migration) -> Stored:
        """Write `migration` over `stored` if nobody else wrote it since (`Conflict` otherwise)."""
        written = await self.store.replace(
            self.keys.migration(migration.id), migration.to_json(), stored.revision
        )
        return Stored(migration, written.mod_revision)

    async def request_cancel(self, migration_id: str) -> Migration:
        """Ask the owning worker to cancel; refused once the migration has switched."""
        for _ in range(16):
            stored = await self.get(migration_id)
            m = stored.migration
            if m.cancel_requested or m.phase is Phase.CANCELLED:
                return m
            if not m.phase.cancellable:
                raise Refused(f"migration {m.id} is {m.phase}: after the switch, move it back")
            try:
                saved = await self.save(stored, replace(m, cancel_requested=True))
            except Conflict:
                continue
            return saved.migration
        raise Conflict(f"migration {migration_id} keeps changing")


def _stored(found: Versioned) -> Stored:
    return Stored(Migration.from_json(found.value), found.mod_revision)
