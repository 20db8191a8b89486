"""Storage drivers, picked by the URI's scheme."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from node.storage.base import Storage

Opener = Callable[[str, Callable[[], float]], Awaitable[Storage]]


async def _open_sqlite(uri: str, clock: Callable[[], float]) -> Storage:
    from node.storage.sqlite import SqliteStorage

    return await SqliteStorage.open(uri, clock)


async def _open_mongodb(uri: str, clock: Callable[[], float]) -> Storage:
    from node.storage.mongodb import MongoStorage

    return await MongoStorage.open(uri, clock)


async def _open_postgresql(uri: str, clock: Callable[[], float]) -> Storage:
    from node.storage.postgresql import PostgresStorage

    return await PostgresStorage.open(uri, clock)


DRIVERS: dict[str, Opener] = {
    "sqlite": _open_sqlite,
    "mongodb": _open_mongodb,
    "postgresql": _open_postgresql,
}


async def open_storage(uri: str, clock: Callable[[], float] = time.time) -> Storage:
    """Open the driver named by `uri`'s scheme (`sqlite:///path`, `mongodb://host/db`,
    `postgresql://user@host/db`)."""
    scheme = urlsplit(uri).scheme
    opener = DRIVERS.get(scheme)
    if opener is None:
        raise ValueError(f"unknown storage scheme {scheme!r}; known: {', '.join(sorted(DRIVERS))}")
    return await opener(uri, clock)
