"""A stand-in for the migration worker in admin and CLI tests: it moves a migration record along
its phases and switches the placement, without copying anything."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from catalog.catalog import Catalog
from catalog.migrations import Migration, Phase
from catalog.registry import Registry

ROUTE = (
    Phase.COPYING,
    Phase.CATCHING_UP,
    Phase.FROZEN,
    Phase.SWITCHED,
    Phase.CLEANUP,
    Phase.DONE,
)


async def advance(
    catalog: Catalog,
    migration_id: str,
    phase: Phase,
    *,
    copied: int | None = None,
    error: str | None = None,
) -> Migration:
    """One phase further, as a worker would write it; the placement moves at SWITCHED."""
    registry = Registry(catalog)
    stored = await registry.get(migration_id)
    m = stored.migration
    changes: dict[str, object] = {}
    if copied is not None:
        changes["progress"] = replace(m.progress, copied=copied)
    if error is not None:
        changes["error"] = error
    if phase is Phase.SWITCHED:
        await switch(catalog, m)
    saved = await registry.save(stored, m.to(phase, time.time(), **changes))
    return saved.migration


async def finish(catalog: Catalog, migration_id: str, copied: int = 0) -> Migration:
    """Every remaining phase through DONE."""
    m = (await Registry(catalog).get(migration_id)).migration
    for phase in ROUTE[ROUTE.index(m.phase) + 1 if m.phase in ROUTE else 0 :]:
        m = await advance(catalog, migration_id, phase, copied=copied)
    return m


async def switch(catalog: Catalog, m: Migration) -> None:
    key = catalog.keys.placement(m.project, m.queue)
    found = await catalog.store.get(key)
    assert found is not None, f"{m.project}/{m.queue} is not placed"
    placement = await catalog.placement(m.project, m.queue)
    assert placement is not None
    moved = replace(placement, partition=m.target, epoch=placement.epoch + 1)
    await catalog.store.replace(key, moved.to_json(), found.mod_revision)


async def work(
    catalog: Catalog, *, delay: float = 0.02, fail: frozenset[str] = frozenset(), copied: int = 7
) -> None:
    """Until cancelled, take every active migration one phase further each `delay` seconds.

    A cancel request before the switch ends it CANCELLED; queues named in `fail` fail while
    copying, with an error, as a worker reports one.
    """
    registry = Registry(catalog)
    while True:
        for m in await registry.list():
            if m.phase.terminal:
                continue
            if m.cancel_requested and m.phase.cancellable:
                await advance(catalog, m.id, Phase.CANCELLED)
            elif m.queue in fail and m.phase is Phase.COPYING:
                await advance(catalog, m.id, Phase.FAILED, error="the target refused writes")
            else:
                step = ROUTE[ROUTE.index(m.phase) + 1] if m.phase in ROUTE else ROUTE[0]
                await advance(catalog, m.id, step, copied=copied)
        await asyncio.sleep(delay)
