"""What SQLAlchemy's statement layer and its pool's checkout cost on the PostgreSQL driver's hot
path.

The same statement, with the same arguments, run one after another on one pooled connection:
through SQLAlchemy (`AsyncConnection.exec_driver_sql`, the cheapest way it runs text) and on the
asyncpg connection underneath (which the driver uses). Both prepare the statement once and then
reuse it, so the difference is the layer itself: its greenlet hop, cursor and result objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marconi.postgres import EmbeddedPostgres
from node.models import NewMessage, new_id
from node.storage.postgresql import PostgresStorage
from node.storage.postgresql.messages import POST
from node.storage.postgresql.schema import LIVE, MESSAGE_COLUMNS
from tests.services import free_port

ROUNDS = 2000
LIST = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {LIVE} AND marker > $4 ORDER BY marker LIMIT $5"
)


@dataclass(frozen=True)
class StatementCost:
    statement: str
    sqlalchemy_us: float
    driver_us: float


def measure_statements(data: Path) -> list[StatementCost]:
    server = EmbeddedPostgres(data, free_port())
    try:
        server.start()
        return asyncio.run(_measure(server.uri()))
    finally:
        server.remove()


async def _measure(uri: str) -> list[StatementCost]:
    store = await PostgresStorage.open(uri)
    try:
        await store.queues.create("bench", "q", None)
        await store.messages.post("bench", "q", [NewMessage(i, 300) for i in range(20)], "c")

        def post_args() -> tuple[Any, ...]:
            now = time.time()
            # then: the id of the outbox row the post would write (none: no subscription), and
            # no metadata to confirm (node.storage.reading)
            args = ("bench", "q", 1, now, [new_id()], ['{"n": 1}'], [300], [0], ["c"], new_id())
            return (*args, False, None)

        def list_args() -> tuple[Any, ...]:
            return ("bench", "q", time.time(), 0, 10)

        return [
            await _compare(store, "post 1 message", POST, post_args),
            await _compare(store, "list 10 messages", LIST, list_args),
            await _checkouts(store),
        ]
    finally:
        await store.close()


async def _compare(
    store: PostgresStorage, name: str, sql: str, make: Callable[[], tuple[Any, ...]]
) -> StatementCost:
    async with store.db.engine.connect() as wrapper:
        raw: Any = (await wrapper.get_raw_connection()).driver_connection

        async def through() -> Any:
            return await wrapper.exec_driver_sql(sql, make())

        async def direct() -> Any:
            return await raw.execute(sql, *make())

        costs: dict[str, list[float]] = {"through": [], "direct": []}
        for _ in range(3):  # alternate, so that a burst of load hits both alike
            costs["through"].append(await _timed(ROUNDS, through))
            costs["direct"].append(await _timed(ROUNDS, direct))
            await wrapper.commit()
    return StatementCost(name, min(costs["through"]), min(costs["direct"]))


async def _checkouts(store: PostgresStorage) -> StatementCost:
    async def pooled() -> None:
        async with store.db.engine.connect() as wrapper:
            await wrapper.get_raw_connection()

    async def leased() -> None:
        async with store.db.session():
            pass

    costs: dict[str, list[float]] = {"pooled": [], "leased": []}
    for _ in range(3):
        costs["pooled"].append(await _timed(ROUNDS, pooled))
        costs["leased"].append(await _timed(ROUNDS, leased))
    return StatementCost("check a connection out", min(costs["pooled"]), min(costs["leased"]))


async def _timed(rounds: int, run: Any) -> float:
    """Microseconds per statement, `rounds` of them one after another."""
    for _ in range(50):
        await run()
    started = time.perf_counter()
    for _ in range(rounds):
        await run()
    return (time.perf_counter() - started) / rounds * 1e6
