"""The driver-independent half of the transfer seam (`node.storage.base.TransferStore`): what a
fence reason may be, how an exported message looks, a message's fingerprint and the digest a
verify step compares, and how long tombstones are kept."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from node.models import Message, MessageRow, QueueDigest, is_id
from node.storage.base import TransferStore

# A fence reason travels as the value of an HTTP header (`X-Marconi-Fence`).
REASON = re.compile(r"[a-z][a-z0-9-]{0,31}")
DIGEST_BATCH = 1000
# Tombstones of a tracked queue's deleted messages are kept this long (seconds) and then
# collected; changes after a position older than that are reported lost (`ChangesLost`).
TOMBSTONE_RETENTION = 3600.0
CHECKSUM_MODULUS = 2**64


def check_reason(reason: str) -> None:
    if not REASON.fullmatch(reason):
        raise ValueError(f"a fence reason is a short lowercase token, not {reason!r}")


def check_ids(ids: Sequence[str]) -> None:
    bad = [i for i in ids if not is_id(i)]
    if bad:
        raise ValueError(f"not an id: {bad[0]!r}")


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")


def exported(message: Message, now: float) -> Message:
    """`message` as exported: a claim that has expired is no claim."""
    if message.claim_id is not None and message.claim_expires <= now:
        return dataclasses.replace(message, claim_id=None, claim_expires=0.0)
    return message


def row(m: Message) -> MessageRow:
    """`m` as a row: its body as the JSON text every driver stores."""
    return MessageRow(
        m.id,
        m.marker,
        json.dumps(m.body),
        m.ttl,
        m.created,
        m.expires,
        m.client_id,
        m.delay_expires,
        m.claim_id,
        m.claim_expires,
        m.claim_count,
    )


def sql_values(project: str, queue: str, m: MessageRow) -> tuple[Any, ...]:
    """A row's values in the SQL drivers' `messages` column order (id, project, queue, marker,
    body, ttl, created, expires, delay_expires, client_id, claim_id, claim_expires,
    claim_count)."""
    return (
        m.id,
        project,
        queue,
        m.marker,
        m.body,
        m.ttl,
        m.created,
        m.expires,
        m.delay_expires,
        m.client_id,
        m.claim_id,
        m.claim_expires,
        m.claim_count,
    )


def message_from_row(row: Sequence[Any]) -> Message:
    """A message from a row of the SQL drivers' `MESSAGE_COLUMNS` (id, marker, body, ttl,
    created, expires, client_id, delay_expires, claim_id, claim_expires, claim_count)."""
    return Message(
        id=row[0],
        marker=row[1],
        body=json.loads(row[2]),
        ttl=row[3],
        created=row[4],
        expires=row[5],
        client_id=row[6],
        delay_expires=row[7],
        claim_id=row[8],
        claim_expires=row[9],
        claim_count=row[10] if len(row) > 10 else 0,
    )


def fingerprint(
    message_id: str,
    marker: int,
    body: str,
    expires: float,
    claim_id: str | None,
    claim_expires: float,
    now: float,
    claim_count: int = 0,
) -> int:
    """A live message's fingerprint: a 64-bit hash of what can differ between two copies of it
    (ttl changes only with `expires`; created, delay and client id never change after the post).
    `body` is the stored JSON text, which every driver writes with `json.dumps`; a claim that
    has expired by `now` counts as none, as in an export. A claim count counts when it is not 0
    (so a message never claimed keeps the fingerprint it had before counts were kept)."""
    live = claim_id is not None and claim_expires > now
    claim = f"{claim_id}\x1f{float(claim_expires)!r}" if live else "\x1f0.0"
    line = f"{message_id}\x1f{int(marker)}\x1f{float(expires)!r}\x1f{claim}\x1f{body}"
    if claim_count:
        line += f"\x1e{int(claim_count)}"
    return int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "big")


def checksum(total: int) -> str:
    return f"{total % CHECKSUM_MODULUS:016x}"


async def digest(store: TransferStore, project: str, queue: str) -> QueueDigest:
    """`TransferStore.digest`, written once over the store's fingerprints."""
    count = top = total = 0
    while True:
        page = await store.fingerprints(project, queue, after_marker=top, limit=DIGEST_BATCH)
        for _, value in page:
            total += value
        if page:
            count += len(page)
            top = page[-1][0]
        if len(page) < DIGEST_BATCH:
            break
        await asyncio.sleep(0)  # SQLite reads never suspend: let the loop run between pages
    claims = await store.export_claims(project, queue)
    return QueueDigest(count, top, checksum(total), tuple(sorted(c.id for c in claims)))
