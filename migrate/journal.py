"""Where a running migration's record is written: the catalog, by compare-and-swap (`Registry`),
or memory for a dry run. The machine saves every phase here before it acts on it."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from catalog.catalog import CAS_ATTEMPTS
from catalog.errors import Conflict
from catalog.migrations import Migration
from catalog.registry import Registry, Stored
from migrate.errors import CancelArrived, OwnershipLost


class Journal(Protocol):
    @property
    def migration(self) -> Migration:
        """The record as last read or written."""

    async def save(self, migration: Migration) -> Migration:
        """Persist `migration` over the last record seen; return what was written.

        The only write another party may make meanwhile is a cancel request: it is merged into
        `migration` (so a cancel is never lost), except into a phase past the point of no return,
        where `CancelArrived` is raised and nothing is written. Any other concurrent write means
        another worker runs the migration: `OwnershipLost`. Raises `CatalogUnavailable` when
        etcd did not answer (the write may have committed: reload before going on)."""


class RegistryJournal:
    def __init__(self, registry: Registry, stored: Stored) -> None:
        self.registry = registry
        self._stored = stored

    @classmethod
    async def load(cls, registry: Registry, migration_id: str) -> RegistryJournal:
        return cls(registry, await registry.get(migration_id))

    @property
    def migration(self) -> Migration:
        return self._stored.migration

    async def save(self, migration: Migration) -> Migration:
        for _ in range(CAS_ATTEMPTS):
            try:
                self._stored = await self.registry.save(self._stored, migration)
                return migration
            except Conflict:
                base = self._stored.migration
                self._stored = await self.registry.get(migration.id)
                migration = _merge(base, self._stored.migration, migration)
        raise OwnershipLost(f"migration {migration.id} keeps changing under this worker")


class MemoryJournal:
    """A journal that writes nothing anywhere: for dry runs."""

    def __init__(self, migration: Migration) -> None:
        self._migration = migration

    @property
    def migration(self) -> Migration:
        return self._migration

    async def save(self, migration: Migration) -> Migration:
        self._migration = migration
        return migration


def _merge(base: Migration, theirs: Migration, mine: Migration) -> Migration:
    """`mine` (written over `base`) again over `theirs`, if `theirs` only asked to cancel."""
    if dataclasses.replace(theirs, cancel_requested=base.cancel_requested) != base:
        raise OwnershipLost(f"migration {mine.id} was written by someone else (now {theirs.phase})")
    if theirs.cancel_requested and not mine.cancel_requested:
        if not (mine.phase.cancellable or mine.phase.terminal):
            raise CancelArrived(f"migration {mine.id}: cancel requested before the switch")
        mine = dataclasses.replace(mine, cancel_requested=True)
    return mine
