"""The migration worker: follows the catalog's migrations, owns some through its lease, and runs
each owned one's state machine in its own task.

Any number of workers may run: a migration is run by the one worker holding its owner key
(`migrate.ownership`). The worker looks for migrations to take at start, whenever a migration or
an owner key changes (two watches), and every `lease_ttl` seconds should a watch be down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable

from bson import ObjectId

from catalog.catalog import Catalog
from catalog.errors import CatalogError, CatalogUnavailable, Compacted, NotFound
from catalog.keys import Keys
from catalog.registry import Registry
from catalog.store import CatalogStore
from ground.logs import get_logger
from migrate import census, metrics
from migrate.deadletters import Mover
from migrate.errors import MigrationError, OwnershipLost
from migrate.journal import RegistryJournal
from migrate.machine import NO_HOOKS, Hooks, Machine
from migrate.ownership import Ownership
from migrate.settings import WorkerSettings
from migrate.steps import LiveSteps, Move
from migrate.storages import PinnedClock, Storages
from node.errors import StorageError

log = get_logger("migrate.worker")
MAX_RETRY_PAUSE = 30.0


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{str(ObjectId())[-6:]}"


class Worker:
    def __init__(
        self,
        store: CatalogStore,
        keys: Keys,
        settings: WorkerSettings,
        *,
        clock: Callable[[], float] = time.time,
        hooks: Hooks = NO_HOOKS,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.hooks = hooks
        self.name = name or worker_name()
        self.catalog = Catalog(store, keys)
        self.registry = Registry(self.catalog, clock=clock)
        self.storages = Storages(self.catalog, PinnedClock(clock))
        self.ownership = Ownership(
            store, keys, self.name, settings.lease_ttl, self._lost, settings.retry_pause
        )
        self.runners: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self.ownership.start()
        self._tasks = [
            asyncio.create_task(self._follow(self.keys.migrations)),
            asyncio.create_task(self._follow(self.keys.owners)),
            asyncio.create_task(self._take_migrations()),
        ]
        if self.settings.dead_letter_interval > 0:
            mover = Mover(
                self.catalog,
                self.storages,
                self.ownership,
                interval=self.settings.dead_letter_interval,
                batch=self.settings.dead_letter_batch,
                crash_after=self.settings.dead_letter_crash_after,
            )
            self._tasks.append(asyncio.create_task(mover.run(), name="dead-letters"))
        if self.settings.census_interval > 0:
            census_run = census.run(
                self.catalog,
                self.storages,
                self.settings.census_interval,
                self.settings.census_stats_limit,
            )
            self._tasks.append(asyncio.create_task(census_run))
        log.info("worker_started", worker=self.name, prefix=self.keys.prefix)

    async def stop(self, *, release: bool = True) -> None:
        """Stop, in order: look for no more migrations; stop the runners at their next await
        (every step is idempotent, the next owner runs it again); give the migrations up by
        revoking the lease (`release=False` leaves them to expire with it, as a crash does);
        close the storage handles."""
        await _cancel(self._tasks)
        self._tasks = []
        await _cancel(list(self.runners.values()))
        await self.ownership.close(revoke=release)
        await self.storages.close()
        log.info("worker_stopped", worker=self.name)

    def _lost(self) -> None:
        """The lease is gone: another worker may own these migrations already."""
        for task in self.runners.values():
            task.cancel()

    # --- finding migrations to run ---------------------------------------------------------------

    async def _take_migrations(self) -> None:
        while True:
            try:
                await self._take()
            except CatalogError as exc:
                log.warning("worker_scan_failed", worker=self.name, error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.lease_ttl):
                    await self._wake.wait()
            self._wake.clear()

    async def _take(self) -> None:
        migrations = await self.registry.list()
        metrics.count_phases(migrations, self.clock())
        owners = {v.key: v.value for v in (await self.store.snapshot(self.keys.owners)).items}
        for m in migrations:
            if m.phase.terminal or m.id in self.runners:
                continue
            if len(self.runners) >= self.settings.max_running or not self.ownership.valid():
                return
            owner = owners.get(self.keys.owner(m.id))
            if owner is not None and owner != self.ownership.value:
                continue
            if await self.ownership.claim(m.id):
                log.info("migration_owned", worker=self.name, migration=m.id, phase=m.phase.value)
                self.runners[m.id] = asyncio.create_task(self._run(m.id), name=f"migration-{m.id}")
                metrics.RUNNING.set(len(self.runners))

    async def _follow(self, prefix: str) -> None:
        """Wake `_take_migrations` at every change under `prefix`; follow again after errors."""
        revision: int | None = None
        while True:
            try:
                if revision is None:  # one key is enough to learn the revision
                    revision = (await self.store.page(prefix, "", 1)).revision
                async for event in self.store.watch(prefix, revision + 1):
                    revision = event.revision
                    self._wake.set()
            except Compacted:
                revision = None
            except CatalogUnavailable as exc:
                log.warning("worker_watch_failed", worker=self.name, error=str(exc))
                await asyncio.sleep(self.settings.retry_pause)
            self._wake.set()  # changes may have been missed

    # --- running one migration -------------------------------------------------------------------

    async def _run(self, migration_id: str) -> None:
        pause = self.settings.retry_pause
        try:
            while True:
                try:
                    await self._run_once(migration_id)
                    await self.ownership.release(migration_id)
                    return
                except (OwnershipLost, NotFound) as exc:
                    log.warning("migration_given_up", migration=migration_id, reason=str(exc))
                    return
                except Exception as exc:
                    # etcd or a partition down, or a step refused past the switch: the machine
                    # resumes from the record after a pause.
                    log.warning(
                        "migration_step_failed",
                        migration=migration_id,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=pause,
                        exc_info=not isinstance(exc, CatalogError | StorageError | MigrationError),
                    )
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, MAX_RETRY_PAUSE)
                    self.ownership.check()
        except OwnershipLost as exc:
            log.warning("migration_given_up", migration=migration_id, reason=str(exc))
        finally:
            self.runners.pop(migration_id, None)
            metrics.RUNNING.set(len(self.runners))
            self._wake.set()

    async def _run_once(self, migration_id: str) -> None:
        journal = await RegistryJournal.load(self.registry, migration_id)
        m = journal.migration
        if m.phase.terminal:
            return
        source = await self.storages.of(m.source)
        target = await self.storages.of(m.target)
        steps = LiveSteps(
            Move.of(m),
            self.catalog,
            source.transfer,
            target.transfer,
            batch=self.settings.batch,
            settle=self.settings.settle,
            pinned=self.storages.clock.pinned,
            clock=self.storages.clock,
            subscriptions=(source.subscriptions, target.subscriptions),
            outboxes=(source.outbox, target.outbox),
        )
        machine = Machine(
            journal,
            steps,
            self.settings,
            hooks=self.hooks,
            guard=self.ownership.check,
            clock=self.clock,
        )
        final = await machine.run()
        log.info("migration_finished", migration=m.id, phase=final.phase.value, error=final.error)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
