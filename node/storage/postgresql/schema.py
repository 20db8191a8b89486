"""The PostgreSQL driver's schema, versioned, and the row helpers its modules share.

`MIGRATIONS[i]` takes a schema at version i to version i + 1; `marconi_schema` records the
version. A node applies what is missing at start, under a transaction-scoped advisory lock, so
nodes of one partition starting at once upgrade it once; a node that finds a newer schema than
it knows refuses to start (an older release must not write what a newer one reads differently).

Tables mirror the SQLite driver's (`node.storage.sqlite_schema`), with one addition:
`queues.fence` repeats the queue's row of `fences` on the queue's own row. Every write locks the
queue's row before it acts (a post updates it, the other writes take `FOR KEY SHARE`), and
`freeze` takes it `FOR UPDATE`, so a write either commits before the freeze or, waiting on the
lock, sees the fence on the row version the freeze committed: once `freeze` returns, nothing
lands. `fences` keeps the fences of queues that do not exist (tombstones).

Change tracking (see `node.storage.base.TransferStore`): as in SQLite, `queues.stamp` is the
change sequence, raised by each write of a tracked queue while it holds the queue's row, so
stamps commit in their order; `messages.stamp` and `claims.stamp` (a claim made or renewed),
and `removed` for tombstones (of messages, and of released claims: `claim`, marker 0).

A fence may have a deadline (`fences.until`, repeated as `queues.fence_until`; 0: none), by the
node's clock (the storage's `clock`, passed to each statement as `now`): from then on it is no
fence, though its row stays until `freeze` or `unfreeze` writes it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node.errors import QueueFrozen
from node.models import Fence

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: queues, messages, claims, fences.
    (
        """CREATE TABLE queues (
            project text NOT NULL,
            name text NOT NULL,
            metadata text NOT NULL DEFAULT '{}',
            counter bigint NOT NULL DEFAULT 0,
            created double precision NOT NULL,
            fence text,
            PRIMARY KEY (project, name))""",
        """CREATE TABLE messages (
            id text PRIMARY KEY,
            project text NOT NULL,
            queue text NOT NULL,
            marker bigint NOT NULL,
            body text NOT NULL,
            ttl integer NOT NULL,
            created double precision NOT NULL,
            expires double precision NOT NULL,
            delay_expires double precision NOT NULL DEFAULT 0,
            client_id text NOT NULL,
            claim_id text,
            claim_expires double precision NOT NULL DEFAULT 0)""",
        "CREATE UNIQUE INDEX messages_by_marker ON messages (project, queue, marker)",
        "CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL",
        "CREATE INDEX messages_by_expiry ON messages (expires)",
        """CREATE TABLE claims (
            id text PRIMARY KEY,
            project text NOT NULL,
            queue text NOT NULL,
            ttl integer NOT NULL,
            grace integer NOT NULL,
            created double precision NOT NULL,
            expires double precision NOT NULL)""",
        "CREATE INDEX claims_by_queue ON claims (project, queue, expires)",
        "CREATE INDEX claims_by_expiry ON claims (expires)",
        """CREATE TABLE fences (
            project text NOT NULL,
            queue text NOT NULL,
            reason text NOT NULL,
            PRIMARY KEY (project, queue))""",
    ),
    # 2: change tracking, for migrations' catch-up.
    (
        "ALTER TABLE queues ADD COLUMN stamp bigint NOT NULL DEFAULT 0",
        "ALTER TABLE queues ADD COLUMN forgotten bigint NOT NULL DEFAULT 0",
        "ALTER TABLE queues ADD COLUMN tracked boolean NOT NULL DEFAULT false",
        "ALTER TABLE messages ADD COLUMN stamp bigint NOT NULL DEFAULT 0",
        "CREATE INDEX messages_by_stamp ON messages (project, queue, stamp) WHERE stamp > 0",
        """CREATE TABLE removed (
            project text NOT NULL,
            queue text NOT NULL,
            stamp bigint NOT NULL,
            id text NOT NULL,
            marker bigint NOT NULL,
            at double precision NOT NULL,
            PRIMARY KEY (project, queue, stamp, id))""",
        "CREATE INDEX removed_by_age ON removed (at)",
    ),
    # 3: claims tracked like messages; fences that lift themselves at a deadline.
    (
        "ALTER TABLE claims ADD COLUMN stamp bigint NOT NULL DEFAULT 0",
        "CREATE INDEX claims_by_stamp ON claims (project, queue, stamp) WHERE stamp > 0",
        "ALTER TABLE removed ADD COLUMN claim boolean NOT NULL DEFAULT false",
        "ALTER TABLE fences ADD COLUMN until double precision NOT NULL DEFAULT 0",
        "ALTER TABLE queues ADD COLUMN fence_until double precision NOT NULL DEFAULT 0",
    ),
    # 4: subscriptions (node.storage.base.SubscriptionStore); `source` is a queue's name.
    (
        """CREATE TABLE subscriptions (
            id text PRIMARY KEY,
            project text NOT NULL,
            source text NOT NULL,
            subscriber text NOT NULL,
            ttl bigint NOT NULL,
            created double precision NOT NULL,
            expires double precision NOT NULL,
            options text NOT NULL DEFAULT '{}',
            confirmed boolean NOT NULL DEFAULT false)""",
        "CREATE UNIQUE INDEX subscriptions_by_subscriber"
        " ON subscriptions (project, source, subscriber)",
        "CREATE INDEX subscriptions_by_source ON subscriptions (project, source, id)",
        "CREATE INDEX subscriptions_by_expiry ON subscriptions (expires)",
    ),
    # 5: how many claims took each message (a queue's `_max_claim_count`).
    ("ALTER TABLE messages ADD COLUMN claim_count integer NOT NULL DEFAULT 0",),
    # 6: the outbox of notifications owed to subscribers (node.storage.postgresql.outbox).
    (
        """CREATE TABLE outbox (
            id text PRIMARY KEY,
            project text NOT NULL,
            queue text NOT NULL,
            subscription text NOT NULL,
            subscriber text NOT NULL,
            options text NOT NULL,
            confirmed boolean NOT NULL,
            notices text NOT NULL,
            posted double precision NOT NULL,
            due double precision NOT NULL,
            failures integer NOT NULL DEFAULT 0,
            sent integer NOT NULL DEFAULT 0,
            owner text NOT NULL DEFAULT '')""",
        "CREATE INDEX outbox_by_due ON outbox (due)",
        "CREATE INDEX outbox_by_queue ON outbox (project, queue)",
    ),
    # 7: the outgoing piles of dead letters (node.storage.deadletters), found by the mover.
    ("CREATE INDEX queues_piles ON queues (name, project) WHERE starts_with(name, E'\\x7f')",),
)
VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The partition's schema was written by a newer release than this node."""


async def upgrade(conn: Any, schema: str, *, upto: int = VERSION) -> int:
    """Bring `schema` to version `upto` (creating it if needed); return the version it had.

    Runs in one transaction holding an advisory lock named after the schema: concurrent nodes
    wait for the first, then find nothing to do."""
    async with conn.transaction():
        # An upgrade may index a large table: no statement timeout for it, nor for the nodes
        # that wait for it on the lock.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1977))", schema)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".marconi_schema (version integer NOT NULL)'
        )
        found = await conn.fetchval(f'SELECT max(version) FROM "{schema}".marconi_schema')
        version = int(found or 0)
        if version > VERSION:
            raise SchemaTooNew(
                f"schema {schema} is at version {version}; this node knows up to {VERSION}"
            )
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        for statements in MIGRATIONS[version:upto]:
            for statement in statements:
                await conn.execute(statement)
        if upto > version:
            await conn.execute("DELETE FROM marconi_schema")
            await conn.execute("INSERT INTO marconi_schema (version) VALUES ($1)", upto)
        return version


MESSAGE_COLUMNS = (
    "id, marker, body, ttl, created, expires, client_id, delay_expires, claim_id, claim_expires,"
    " claim_count"
)
LIVE = "project = $1 AND queue = $2 AND expires > $3"
# The queue of a row found by its key (a message's or claim's id, a claim's messages), checked
# in a form no index on (project, queue, ...) can serve, so that the key's index is the only one
# the planner can take: while a table has no statistics yet (until autovacuum first analyzes it)
# it rates a walk of the whole queue as cheap as the key's index, and a delete took the walk
# (BENCHMARKS.md, PostgreSQL driver).
IN_QUEUE = "ARRAY[project, queue] = ARRAY[$1::text, $2::text]"
LIVE_BY_KEY = f"{IN_QUEUE} AND expires > $3"
FREE = "delay_expires <= $3 AND (claim_id IS NULL OR claim_expires <= $3)"
# A fence in force ($3: now): its reason, and the seconds until it lifts itself (None: never).
IN_FORCE = "(until = 0 OR until > $3)"
FENCE = (
    "SELECT reason, CASE WHEN until > 0 THEN until - $3 END FROM fences"
    f" WHERE project = $1 AND queue = $2 AND {IN_FORCE}"
)
NOT_MOVED = (
    "NOT EXISTS (SELECT 1 FROM fences f WHERE f.project = $1 AND f.queue = $2"
    f" AND f.reason = '{Fence.MOVED.value}' AND (f.until = 0 OR f.until > $3))"
)


def unfenced(now: str) -> str:
    """The condition on a queue's row that it has no fence in force at `now` (a parameter)."""
    return f"(fence IS NULL OR (fence_until > 0 AND fence_until <= {now}))"


async def fence_of(
    conn: Any, project: str, queue: str, now: float
) -> tuple[str, float | None] | None:
    """The queue's fence in force at `now`: its reason and the seconds until it lifts itself
    (None: never); None when it has none (or it lapsed)."""
    row = await conn.fetchrow(FENCE, project, queue, now)
    return None if row is None else (str(row[0]), row[1])


async def check_readable(conn: Any, project: str, queue: str, now: float) -> None:
    """Refuse a read of a queue that has moved to another partition."""
    fence = await fence_of(conn, project, queue, now)
    if fence is not None and fence[0] == Fence.MOVED:
        raise QueueFrozen(project, queue, Fence.MOVED)


async def check_writable(conn: Any, project: str, queue: str, now: float) -> None:
    if (fence := await fence_of(conn, project, queue, now)) is not None:
        raise QueueFrozen(project, queue, fence[0], lifts=fence[1])


def check_row_fence(project: str, queue: str, reason: str | None, until: float, now: float) -> None:
    """Refuse a write by the fence on the queue's row (`fence`, `fence_until`), if in force."""
    if reason is not None and (until == 0 or until > now):
        raise QueueFrozen(project, queue, reason, lifts=until - now if until else None)


async def hold_queue(
    conn: Any, project: str, queue: str, now: float, *, stamp: bool = True
) -> int | None:
    """Start a write of the queue, inside the write's transaction: lock the queue's row against
    a freeze, refuse a fenced queue, and take the write's stamp (0 when untracked). Returns None
    when the queue does not exist (and no tombstone stands for it)."""
    row = await conn.fetchrow(
        "SELECT fence, fence_until, tracked FROM queues WHERE project = $1 AND name = $2"
        " FOR KEY SHARE",
        project,
        queue,
    )
    if row is None:
        await check_writable(conn, project, queue, now)
        return None
    check_row_fence(project, queue, row[0], row[1], now)
    if not (stamp and row[2]):
        return 0
    return int(await next_stamp(conn, project, queue))


async def next_stamp(conn: Any, project: str, queue: str) -> int:
    """The next value of a tracked queue's change sequence, 0 when untracked."""
    value = await conn.fetchval(
        "UPDATE queues SET stamp = stamp + 1 WHERE project = $1 AND name = $2 AND tracked"
        " RETURNING stamp",
        project,
        queue,
    )
    return 0 if value is None else int(value)


async def bury(
    conn: Any,
    project: str,
    queue: str,
    gone: Sequence[tuple[str, int]],
    now: float,
    stamp: int,
    *,
    claim: bool = False,
) -> None:
    """Tombstones for the messages `gone` (id, marker) of a tracked queue (`stamp` > 0); with
    `claim`, for the claims `gone` (id, 0) released."""
    if gone and stamp:
        await conn.execute(
            "INSERT INTO removed (project, queue, stamp, id, marker, at, claim)"
            " SELECT $1, $2, $3, g.id, g.marker, $4, $7 FROM unnest($5::text[], $6::bigint[])"
            " AS g(id, marker) ON CONFLICT DO NOTHING",
            project,
            queue,
            stamp,
            now,
            [g[0] for g in gone],
            [g[1] for g in gone],
            claim,
        )
