"""Which worker runs which migration: owner keys bound to the worker's lease.

One lease per worker, as etcd's election sessions have it: each migration the worker runs has a
key `owners/{id}` created (create-if-absent) with that lease, so exactly one live worker holds it,
and every migration of a worker that died is free again once its lease expires. The lease is
refreshed every third of its ttl. The worker may act while `check()` passes: until `ttl` after the
last refresh it sent that succeeded, which is never later than etcd's own expiry of the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from catalog.errors import CatalogError, CatalogUnavailable, Conflict, LeaseExpired
from catalog.keys import Keys
from catalog.store import CatalogStore
from ground.logs import get_logger
from migrate.errors import OwnershipLost

log = get_logger("migrate.ownership")


class Ownership:
    def __init__(
        self,
        store: CatalogStore,
        keys: Keys,
        worker: str,
        ttl: int,
        on_lost: Callable[[], None] = lambda: None,
        retry_pause: float = 1.0,
    ) -> None:
        self.store = store
        self.keys = keys
        self.worker = worker
        self.ttl = ttl
        self.on_lost = on_lost  # called when every owned migration must stop at once
        self.retry_pause = retry_pause
        self.lease: int | None = None
        self._until = 0.0  # monotonic time until which the lease is surely alive
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._grant()
        self._keeper = asyncio.create_task(self._keep_alive(), name=f"lease-{self.worker}")

    def valid(self) -> bool:
        return self.lease is not None and time.monotonic() < self._until

    def check(self) -> None:
        """Raise `OwnershipLost` unless this worker surely still holds its lease."""
        if not self.valid():
            raise OwnershipLost(f"worker {self.worker} lost its lease")

    @property
    def value(self) -> bytes:
        """What an owner key of this worker holds: a key left by a lease this worker held before
        (and lost) is not this worker's any more, even though it names the worker."""
        lease = "" if self.lease is None else f"{self.lease:x}"
        return json.dumps({"worker": self.worker, "lease": lease}).encode()

    async def claim(self, migration_id: str) -> bool:
        """Own the migration unless another worker does; True if this worker owns it now."""
        if self.lease is None or not self.valid():
            return False
        try:
            created, now = await self.store.create(
                self.keys.owner(migration_id), self.value, lease=self.lease
            )
        except LeaseExpired:
            return False
        return created or now.value == self.value

    async def release(self, migration_id: str) -> None:
        """Give the migration up (its owner key deleted), if this worker owns it."""
        key = self.keys.owner(migration_id)
        found = await self.store.get(key)
        if found is not None and found.value == self.value:
            with contextlib.suppress(Conflict):
                await self.store.delete(key, found.mod_revision)

    async def close(self, *, revoke: bool = True) -> None:
        """Stop refreshing; with `revoke`, free every owned migration now (else at expiry)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        lease, self.lease = self.lease, None
        if revoke and lease is not None:
            with contextlib.suppress(CatalogError):
                await self.store.revoke_lease(lease)

    async def _grant(self) -> None:
        sent = time.monotonic()
        self.lease = await self.store.grant_lease(self.ttl)
        self._until = sent + self.ttl

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._refresh()
            except CatalogError as exc:
                log.warning("lease_refresh_failed", worker=self.worker, error=str(exc))
            if not self.valid():
                self.on_lost()
                await self._regrant()

    async def _refresh(self) -> None:
        assert self.lease is not None
        sent = time.monotonic()
        try:
            await self.store.refresh_lease(self.lease)
        except LeaseExpired:
            log.error("lease_expired", worker=self.worker, lease=self.lease)
            self._until = 0.0
            return
        self._until = sent + self.ttl

    async def _regrant(self) -> None:
        """A new lease, once etcd answers; the old one is revoked, or its keys expire with it."""
        old = self.lease
        while True:
            try:
                if old is not None:
                    await self.store.revoke_lease(old)
                    old = None
                await self._grant()
                log.info("lease_granted", worker=self.worker, lease=self.lease)
                return
            except CatalogUnavailable as exc:
                log.warning("lease_grant_failed", worker=self.worker, error=str(exc))
                await asyncio.sleep(self.retry_pause)
