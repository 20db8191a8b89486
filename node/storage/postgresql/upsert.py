"""What an import writes: rows compared with what is stored, only the difference written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from node.errors import TransferConflict

MESSAGE_FIELDS = (
    "id",
    "project",
    "queue",
    "marker",
    "body",
    "ttl",
    "created",
    "expires",
    "delay_expires",
    "client_id",
    "claim_id",
    "claim_expires",
    "claim_count",
)
MESSAGE_TYPES = (
    "text",
    "text",
    "text",
    "bigint",
    "text",
    "int",
    "float8",
    "float8",
    "float8",
    "text",
    "text",
    "float8",
    "int",
)
CLAIM_FIELDS = ("id", "project", "queue", "ttl", "grace", "created", "expires")
CLAIM_TYPES = ("text", "text", "text", "int", "int", "float8", "float8")


async def upsert(
    conn: Any,
    table: str,
    fields: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    stamp: int | None = None,
) -> int:
    """Insert the rows that are new and overwrite those that differ; rows are in `fields`
    order with id, project and queue first. With `stamp`, what is written is stamped with it.
    Returns how many were written."""
    if not rows:
        return 0
    stored = {
        r[0]: tuple(r)
        for r in await conn.fetch(
            f"SELECT {', '.join(fields)} FROM {table} WHERE id = ANY($1::text[]) FOR UPDATE",
            [row[0] for row in rows],
        )
    }
    for row in rows:
        old = stored.get(row[0])
        if old is not None and old[1:3] != row[1:3]:
            raise TransferConflict(f"{table[:-1]} {row[0]} belongs to queue {old[2]}")
    changed = [row for row in rows if row[0] in stored and stored[row[0]] != row]
    new = [row for row in rows if row[0] not in stored]
    names, kinds = list(fields), list(types)
    if stamp is not None:
        names.append("stamp")
        kinds.append("bigint")
        changed = [(*row, stamp) for row in changed]
        new = [(*row, stamp) for row in new]
    unnest = ", ".join(f"${i + 1}::{kind}[]" for i, kind in enumerate(kinds))
    try:
        if changed:
            assignments = ", ".join(f"{name} = u.{name}" for name in names[3:])
            await conn.execute(
                f"UPDATE {table} t SET {assignments} FROM unnest({unnest}) AS u({', '.join(names)})"
                " WHERE t.id = u.id",
                *zip(*changed, strict=True),
            )
        if new:
            await conn.execute(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({unnest})",
                *zip(*new, strict=True),
            )
    except asyncpg.UniqueViolationError as exc:  # the marker index: another message has it
        raise TransferConflict(f"{table}: {exc}") from exc
    return len(changed) + len(new)
