"""What is particular to the PostgreSQL driver: its schema's versions, its settings, its plans,
claims and posts under contention, and a node riding out a restart of its server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from node.errors import QueueFrozen
from node.models import NewMessage, new_id
from node.storage.postgresql import PostgresStorage
from node.storage.postgresql.claims import CLAIM, with_limit
from node.storage.postgresql.connection import PostgresSettings
from node.storage.postgresql.messages import DELETE_HELD, POST
from node.storage.postgresql.outbox import LEASE
from node.storage.postgresql.schema import VERSION, SchemaTooNew, upgrade
from tests.conftest import storage_uri
from tests.services import free_port, node_process

pytestmark = pytest.mark.postgresql

P, Q, CLIENT = "project", "queue", "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"


@pytest.fixture
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh schema on the session's PostgreSQL."""
    return storage_uri("postgresql", tmp_path, request)


@pytest.fixture
async def storage(uri: str) -> AsyncIterator[PostgresStorage]:
    store = await PostgresStorage.open(uri)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def connect(uri: str) -> AsyncIterator[Any]:
    """A plain asyncpg session on the URI's schema, for what a test looks at from outside."""
    settings = PostgresSettings.from_uri(uri)
    dsn = settings.url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": settings.schema})
    try:
        yield conn
    finally:
        await conn.close()


async def listed(store: PostgresStorage, limit: int = 1000) -> list[Any]:
    found = await store.messages.list(
        P,
        Q,
        marker=None,
        limit=limit,
        echo=True,
        include_claimed=True,
        include_delayed=True,
        client_id=CLIENT,
    )
    return found


# --- schema --------------------------------------------------------------------------------------


async def test_an_older_schema_is_upgraded_with_its_data(uri: str) -> None:
    schema = PostgresSettings.from_uri(uri).schema
    async with connect(uri) as conn:
        assert await upgrade(conn, schema, upto=1) == 0
        await conn.execute(
            "INSERT INTO queues (project, name, metadata, counter, created)"
            " VALUES ($1, $2, '{\"kept\": true}', 41, 1.0)",
            P,
            Q,
        )
    store = await PostgresStorage.open(uri)
    try:
        assert await store.queues.get_metadata(P, Q) == {"kept": True}
        [first] = await store.messages.post(P, Q, [NewMessage("after", 60)], CLIENT)
        assert [(m.id, m.marker) for m in await listed(store)] == [(first, 42)]
        await store.transfer.track(P, Q, True)  # the columns version 2 added work
        since = await store.transfer.sequence(P, Q)
        await store.messages.post(P, Q, [NewMessage("tracked", 60)], CLIENT)
        assert len((await store.transfer.changes(P, Q, since=since, limit=10)).messages) == 1
    finally:
        await store.close()
    async with connect(uri) as conn:
        assert await conn.fetchval("SELECT version FROM marconi_schema") == VERSION


async def test_a_version_2_schema_gets_tracked_claims_and_fence_deadlines(uri: str) -> None:
    """Version 3 adds claim stamps, claim tombstones and fence deadlines to a version 2 partition:
    its claims and fences are kept, and work as the protocol now says."""
    schema = PostgresSettings.from_uri(uri).schema
    now, held = time.time(), new_id()
    async with connect(uri) as conn:
        assert await upgrade(conn, schema, upto=2) == 0
        await conn.execute(
            "INSERT INTO queues (project, name, counter, created) VALUES ($1, $2, 0, $3)", P, Q, now
        )
        await conn.execute(
            "INSERT INTO claims (id, project, queue, ttl, grace, created, expires)"
            " VALUES ($1, $2, $3, 600, 60, $4::float8, $4::float8 + 600)",
            held,
            P,
            Q,
            now,
        )
        await conn.execute(
            "INSERT INTO fences (project, queue, reason) VALUES ($1, 'gone', 'moved')", P
        )
    store = await PostgresStorage.open(uri)
    try:
        assert [c.id for c in await store.transfer.export_claims(P, Q, ids=[held])] == [held]
        await store.transfer.track(P, Q, True)
        since = await store.transfer.sequence(P, Q)
        await store.claims.delete(P, Q, held)  # an old claim released: a tombstone
        await store.messages.post(P, Q, [NewMessage("m", 60)], CLIENT)
        made, _ = await store.claims.create(P, Q, ttl=60, grace=60, limit=1)
        changes = await store.transfer.changes(P, Q, since=since, limit=10)
        assert changes.released == (held,)
        assert [c.id for c in changes.claims] == [made.id]
        # The old tombstone has no deadline: it stays, and cannot be extended.
        assert await store.transfer.fence(P, "gone") == "moved"
        assert not await store.transfer.extend(P, "gone", 30)
        await store.transfer.freeze(P, Q, "frozen", lasts=600)
        with pytest.raises(QueueFrozen) as refused:
            await store.messages.post(P, Q, [NewMessage("refused", 60)], CLIENT)
        assert refused.value.lifts is not None and 0 < refused.value.lifts <= 600
        assert await store.transfer.extend(P, Q, 900)
    finally:
        await store.close()
    async with connect(uri) as conn:
        assert await conn.fetchval("SELECT version FROM marconi_schema") == VERSION


async def test_a_version_3_schema_gets_subscriptions(uri: str) -> None:
    """Version 4 adds the subscriptions table to a version 3 partition, its queues kept."""
    schema = PostgresSettings.from_uri(uri).schema
    async with connect(uri) as conn:
        assert await upgrade(conn, schema, upto=3) == 0
        await conn.execute(
            "INSERT INTO queues (project, name, counter, created) VALUES ($1, $2, 0, $3)",
            P,
            Q,
            time.time(),
        )
    store = await PostgresStorage.open(uri)
    try:
        assert await store.queues.exists(P, Q)
        sid = await store.subscriptions.create(P, Q, "http://example.test/hook", 600, {})
        assert sid is not None
        assert [s.id for s in await store.subscriptions.live(P, Q)] == [sid]
    finally:
        await store.close()
    async with connect(uri) as conn:
        assert await conn.fetchval("SELECT version FROM marconi_schema") == VERSION


async def test_a_version_3_schema_counts_claims_from_zero(uri: str) -> None:
    """Version 5 adds each message's claim count: messages stored before count from 0."""
    schema = PostgresSettings.from_uri(uri).schema
    now = time.time()
    async with connect(uri) as conn:
        assert await upgrade(conn, schema, upto=3) == 0
        await conn.execute(
            "INSERT INTO queues (project, name, counter, created) VALUES ($1, $2, 1, $3)", P, Q, now
        )
        await conn.execute(
            "INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,"
            " client_id) VALUES ($1, $2, $3, 1, '\"old\"', 600, $4::float8, $4::float8 + 600,"
            " $5)",
            new_id(),
            P,
            Q,
            now,
            CLIENT,
        )
    store = await PostgresStorage.open(uri)
    try:
        _, held = await store.claims.create(P, Q, ttl=60, grace=60, limit=1)
        assert [(m.body, m.claim_count) for m in held] == [("old", 1)]
    finally:
        await store.close()


async def test_nodes_starting_at_once_create_the_schema_once(uri: str) -> None:
    stores = await asyncio.gather(*(PostgresStorage.open(uri) for _ in range(4)))
    try:
        assert await stores[0].queues.create(P, Q, None)
        assert all([await s.queues.exists(P, Q) for s in stores])
    finally:
        for store in stores:
            await store.close()
    async with connect(uri) as conn:
        assert await conn.fetch("SELECT version FROM marconi_schema") == [(VERSION,)]


async def test_a_newer_schema_is_refused(uri: str) -> None:
    await (await PostgresStorage.open(uri)).close()
    async with connect(uri) as conn:
        await conn.execute("UPDATE marconi_schema SET version = $1", VERSION + 1)
    with pytest.raises(SchemaTooNew):
        await PostgresStorage.open(uri)


# --- settings ------------------------------------------------------------------------------------


def test_settings_come_from_the_query_string() -> None:
    settings = PostgresSettings.from_uri(
        "postgresql://u:pw@db.example:6432/marconi?pool_size=20&statement_timeout=250"
        "&schema=p7&sslmode=require&pool_timeout=2.5&application_name=x"
    )
    assert (settings.pool_size, settings.statement_timeout, settings.schema) == (20, 250, "p7")
    assert (settings.pool_timeout, settings.ssl()) == (2.5, "require")
    # Our settings are taken out; the rest reaches the dialect.
    assert settings.url == "postgresql+asyncpg://u:pw@db.example:6432/marconi?application_name=x"
    for bad in ("pool_size=0", "pool_size=x", "schema=Bad-Name", "sslmode=always"):
        with pytest.raises(ValueError):
            PostgresSettings.from_uri(f"postgresql://h/db?{bad}")


async def test_pool_size_and_statement_timeout_apply(uri: str) -> None:
    store = await PostgresStorage.open(f"{uri}&pool_size=3&statement_timeout=200")
    try:
        assert store.db.engine.pool.size() == 3  # type: ignore[attr-defined]
        async with store.db.session() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "200ms"
        from node.errors import StorageUnavailable

        with pytest.raises(StorageUnavailable):
            async with store.db.session() as conn:
                await conn.execute("SELECT pg_sleep(2)")
        assert await store.ping()  # the pool goes on after a cancelled statement
    finally:
        await store.close()


async def test_a_request_waits_pool_timeout_for_a_connection_then_gives_up(uri: str) -> None:
    from node.errors import StorageUnavailable

    store = await PostgresStorage.open(f"{uri}&pool_size=1&pool_timeout=0.2")
    try:
        async with store.db.session():
            with pytest.raises(StorageUnavailable, match="no connection free"):
                await store.queues.exists(P, Q)
        assert not await store.queues.exists(P, Q)  # the connection is free again
    finally:
        await store.close()


# --- plans ---------------------------------------------------------------------------------------


async def plan(conn: Any, sql: str, *args: Any) -> str:
    rows = await conn.fetch(f"EXPLAIN {sql}", *args)
    return "\n".join(r[0] for r in rows)


async def test_every_hot_query_uses_an_index(storage: PostgresStorage, uri: str) -> None:
    """With sequential scans priced out, a plan still scans a table only when no index serves
    the query."""
    await storage.queues.create(P, Q, None)
    for _ in range(5):
        await storage.messages.post(P, Q, [NewMessage(i, 600) for i in range(200)], CLIENT)
    now, mid = 1e12, "0" * 24
    queries: list[tuple[str, tuple[Any, ...]]] = [
        (
            "SELECT id FROM messages WHERE project = $1 AND queue = $2 AND expires > $3"
            " AND marker > $4 ORDER BY marker LIMIT 10",
            (P, Q, now, 0),
        ),
        ("SELECT id FROM messages WHERE claim_id = $1", (mid,)),
        ("SELECT id FROM messages WHERE expires <= $1 LIMIT 100", (now,)),
        ("SELECT id FROM messages WHERE project = $1 AND queue = $2 AND stamp > $3", (P, Q, 0)),
        ("SELECT id FROM messages WHERE id = ANY($1::text[])", ([mid],)),
        ("SELECT id FROM claims WHERE project = $1 AND queue = $2 AND expires > $3", (P, Q, now)),
        ("SELECT id FROM claims WHERE expires <= $1", (now,)),
        ("SELECT id FROM claims WHERE project = $1 AND queue = $2 AND stamp > $3", (P, Q, 0)),
        ("SELECT 1 FROM removed WHERE at <= $1", (now,)),
        ("SELECT 1 FROM queues WHERE project = $1 AND name > $2 ORDER BY name", (P, "")),
        ("SELECT reason FROM fences WHERE project = $1 AND queue = $2", (P, Q)),
    ]
    async with connect(uri) as conn:
        await conn.execute("ANALYZE")
        await conn.execute("SET enable_seqscan = off")
        for sql, args in queries:
            assert "Seq Scan" not in await plan(conn, sql, *args), sql
        claim = await plan(
            conn, with_limit(CLAIM, 5), P, Q, now, mid, now, now, 60, 0, 60, 60, True, "{}"
        )  # picks by marker, locks what it picks
        assert "Seq Scan" not in claim and "LockRows" in claim
        assert "SKIP LOCKED" in CLAIM
        post = await plan(
            conn, POST, P, Q, 1, now, [mid], ["1"], [60], [0], [CLIENT], mid, True, "{}"
        )
        assert "Seq Scan on queues" not in post
        assert "Seq Scan on subscriptions" not in post  # an unsubscribed queue: one probe
        lease = await plan(conn, LEASE, "owner", now, now + 30, 64)
        assert "Seq Scan on outbox" not in lease


async def test_a_list_plans_once_per_connection(storage: PostgresStorage) -> None:
    """A list's limit is a constant in its statement: the server keeps one generic plan of it
    per connection instead of planning every list again (half its CPU per list at depth)."""
    await storage.queues.create(P, Q, None)
    for _ in range(5):  # a queue deep enough that statistics tell a known limit's cost apart
        await storage.messages.post(P, Q, [NewMessage(i, 600) for i in range(400)], CLIENT)
    async with storage.db.session() as conn:
        await conn.execute("ANALYZE messages")
    for marker in range(10):
        page = await storage.messages.list(
            P,
            Q,
            marker=marker,
            limit=10,
            echo=True,
            include_claimed=False,
            include_delayed=True,
            client_id=CLIENT,
        )
        assert [m.marker for m in page] == list(range(marker + 1, marker + 11))
    async with storage.db.session() as conn:
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'SELECT id, marker%FROM messages%ORDER BY marker LIMIT %'"
        )
    assert generic >= 5 and custom <= 5, (generic, custom)


async def test_a_claim_plans_once_per_connection_and_limit(storage: PostgresStorage) -> None:
    """A claim's limit is a constant in its statement, as a list's: the server keeps a generic
    plan of each limit's statement per connection instead of planning every claim again."""
    await storage.queues.create(P, Q, None)
    for _ in range(5):  # a queue deep enough that statistics tell a known limit's cost apart
        await storage.messages.post(P, Q, [NewMessage(i, 600) for i in range(400)], CLIENT)
    async with storage.db.session() as conn:
        await conn.execute("ANALYZE messages")
    taken: list[int] = []
    for limit in [10] * 10 + [3] * 10:
        claim, messages = await storage.claims.create(P, Q, ttl=60, grace=60, limit=limit)
        assert len(messages) == limit
        taken += [m.marker for m in messages]
    assert taken == list(range(1, 131))  # in marker order, none twice
    async with storage.db.session() as conn:
        plans = {
            row[0]: (row[1], row[2])
            for row in await conn.fetch(
                "SELECT substring(statement from 'LIMIT ([0-9]+) FOR UPDATE SKIP LOCKED'),"
                " generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%picked AS%' AND statement NOT LIKE '%pg_prepared%'"
            )
        }
    assert set(plans) == {"10", "3"}, plans
    for generic, custom in plans.values():
        assert generic >= 5 and custom <= 5, plans


async def without_statistics(store: PostgresStorage) -> None:
    """Keep autovacuum off `messages` (of this test's own schema): it stays unanalyzed."""
    async with store.db.session() as conn:
        await conn.execute("ALTER TABLE messages SET (autovacuum_enabled = false)")


async def test_what_is_found_by_its_key_is_found_by_its_key_before_any_statistics(
    storage: PostgresStorage, uri: str
) -> None:
    """Before autovacuum first analyzes a table the planner rates a walk of a whole queue's
    index as cheap as a key's: a delete by id (with its claim or without) must take the key's
    index anyway (walking the queue, the delete cost grew with the queue: BENCHMARKS.md)."""
    await without_statistics(storage)
    await storage.queues.create(P, Q, None)
    for _ in range(10):
        await storage.messages.post(P, Q, [NewMessage(i, 600) for i in range(200)], CLIENT)
    now, mid = time.time(), "0" * 24
    by_message_id = [
        (DELETE_HELD, (P, Q, now, mid, mid)),
        (DELETE_HELD, (P, Q, now, mid, None)),
    ]
    async with connect(uri) as conn:
        assert await conn.fetchval(
            "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables"
            " WHERE relname = 'messages' AND schemaname = current_schema()"
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for sql, args in by_message_id:
                found = await plan(conn, sql, *args)
                assert "messages_pkey" in found and "messages_by_marker" not in found, found


async def test_a_claim_walks_its_queue_in_order_before_any_statistics(
    storage: PostgresStorage,
) -> None:
    """A deep queue in a table not analyzed yet: the planner would read the whole queue and
    sort it for each claim (a bitmap scan); the node's sessions walk the marker index."""
    await without_statistics(storage)
    await storage.queues.create(P, Q, None)
    now = time.time()
    async with storage.db.transaction() as conn:
        await conn.execute("SET LOCAL statement_timeout = 0")  # a busy machine may take a while
        await conn.execute(
            "INSERT INTO messages (id, project, queue, marker, body, ttl, created, expires,"
            " client_id) SELECT lpad(to_hex(n), 24, '0'), $1, $2, n, '1', 600, $3::float8,"
            " $3::float8 + 600, $4"
            " FROM generate_series(1, 150000) AS n",
            P,
            Q,
            now,
            CLIENT,
            timeout=120,
        )
    async with storage.db.session() as conn:
        found = await plan(
            conn, with_limit(CLAIM, 10), P, Q, now, "f" * 24, now, now, 60, 0, 60, 60, False, None
        )
    assert "Index Scan using messages_by_marker" in found and "Bitmap" not in found, found


# --- contention ----------------------------------------------------------------------------------


async def test_claimers_skip_what_another_holds_and_never_wait(
    storage: PostgresStorage, uri: str
) -> None:
    await storage.queues.create(P, Q, None)
    await storage.messages.post(P, Q, [NewMessage(i, 600) for i in range(100)], CLIENT)
    async with connect(uri) as other, other.transaction():
        # Another claimer's transaction, still open, holds the oldest ten messages.
        locked = await other.fetch(
            "SELECT id FROM messages ORDER BY marker LIMIT 10 FOR UPDATE SKIP LOCKED"
        )
        async with asyncio.timeout(10):  # would wait for ever behind `other` without SKIP LOCKED
            claim, held = await storage.claims.create(P, Q, ttl=60, grace=60, limit=5)
        assert [m.body for m in held] == [10, 11, 12, 13, 14]
        assert not {m.id for m in held} & {r[0] for r in locked}
        waiting = await other.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        )
        assert waiting == 0


async def test_32_concurrent_claimers_share_no_message(uri: str) -> None:
    """Two node processes' pools (two storages), 32 claimers at once."""
    stores = [await PostgresStorage.open(f"{uri}&pool_size=16") for _ in range(2)]
    try:
        await stores[0].queues.create(P, Q, None)
        for _ in range(4):
            await stores[0].messages.post(P, Q, [NewMessage(i, 600) for i in range(100)], CLIENT)

        async def claimer(store: PostgresStorage) -> list[tuple[str, str]]:
            got: list[tuple[str, str]] = []
            while True:
                claim, held = await store.claims.create(P, Q, ttl=300, grace=60, limit=3)
                if not held:
                    return got
                got += [(claim.id, m.id) for m in held]

        results = await asyncio.gather(*(claimer(stores[i % 2]) for i in range(32)))
        taken = [mid for got in results for _, mid in got]
        assert len(taken) == len(set(taken)) == 400, "every message in exactly one live claim"
        assert sum(1 for got in results if got) > 16, "the claimers worked side by side"
        for got in results:
            for claim_id, mid in got:
                assert (await stores[0].messages.get(P, Q, mid)).claim_id == claim_id
    finally:
        for store in stores:
            await store.close()


async def test_64_concurrent_producers_each_keep_their_order(uri: str) -> None:
    stores = [await PostgresStorage.open(f"{uri}&pool_size=16") for _ in range(2)]
    try:
        await stores[0].queues.create(P, Q, None)

        async def producer(n: int) -> list[str]:
            ids = []
            for i in range(8):
                batch = [NewMessage({"p": n, "i": i, "j": j}, 600) for j in range(1 + i % 3)]
                ids += await stores[n % 2].messages.post(P, Q, batch, f"client-{n}")
            return ids

        posted = await asyncio.gather(*(producer(n) for n in range(64)))
        messages = await listed(stores[1], limit=2000)
        assert [m.marker for m in messages] == list(range(1, len(messages) + 1))
        for n, ids in enumerate(posted):
            mine = [m for m in messages if m.body["p"] == n]
            assert [m.id for m in mine] == ids, f"producer {n} out of order"
            assert [(m.body["i"], m.body["j"]) for m in mine] == sorted(
                (m.body["i"], m.body["j"]) for m in mine
            )
    finally:
        for store in stores:
            await store.close()


# --- outage --------------------------------------------------------------------------------------


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any, Message]:
    headers = {"Client-ID": CLIENT, "X-Project-ID": P, "Content-Type": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None, resp.headers
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None, exc.headers


@pytest.mark.slow
def test_a_node_rides_out_a_restart_of_postgresql(tmp_path: Path) -> None:
    from marconi.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    try:
        server.start()
        uri = f"{server.uri()}?pool_timeout=1&connect_timeout=1&statement_timeout=2000"
        with node_process(uri, log_dir=tmp_path) as node:
            messages = f"{node.url}/v2/queues/{Q}/messages"
            acknowledged: list[str] = []
            for i in range(10):
                status, body, _ = call(messages, "POST", {"messages": [{"body": i}]})
                assert status == 201, body
                acknowledged += [r.rsplit("/", 1)[1] for r in body["resources"]]

            server.stop()
            for _ in range(3):
                status, body, headers = call(messages, "POST", {"messages": [{"body": "x"}]})
                assert status == 503, body
                assert headers["Retry-After"] and set(body) == {"title", "description"}
                status, _, headers = call(f"{messages}?echo=true")
                assert status == 503 and headers["Retry-After"]

            server.start()
            for i in range(10, 20):  # the first requests may meet connections the restart broke
                for _ in range(20):
                    status, body, _ = call(messages, "POST", {"messages": [{"body": i}]})
                    if status != 503:
                        break
                assert status == 201, body
                acknowledged += [r.rsplit("/", 1)[1] for r in body["resources"]]

            found: list[str] = []
            url = f"{messages}?echo=true&limit=20"
            while True:
                status, body, _ = call(url)
                if status == 204 or not body["messages"]:
                    break
                found += [m["id"] for m in body["messages"]]
                url = node.url + body["links"][0]["href"]
            assert set(acknowledged) <= set(found)
            assert len(acknowledged) == 20
    finally:
        server.remove()


def test_a_partition_on_a_unix_socket(tmp_path: Path) -> None:
    """A server on the node's machine reached on its Unix socket (`?host=` a folder, as libpq
    and asyncpg take it): what the bench uses (BENCHMARKS.md, PostgreSQL driver)."""
    from marconi.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path / "pg", free_port(), unix_socket=True)
    try:
        server.start()

        async def use() -> tuple[str | None, list[int]]:
            store = await PostgresStorage.open(f"{server.socket_uri()}&pool_size=2")
            try:
                await store.queues.create(P, Q, None)
                await store.messages.post(P, Q, [NewMessage(i, 60) for i in range(3)], CLIENT)
                async with store.db.session() as conn:
                    client = await conn.fetchval("SELECT inet_client_addr()::text")
                page = await store.messages.list(
                    P,
                    Q,
                    marker=None,
                    limit=10,
                    echo=True,
                    include_claimed=False,
                    include_delayed=True,
                    client_id=CLIENT,
                )
                return client, [m.body for m in page]
            finally:
                await store.close()

        client, bodies = asyncio.run(use())
        assert client is None  # no TCP peer: the socket
        assert bodies == [0, 1, 2]
    finally:
        server.remove()
