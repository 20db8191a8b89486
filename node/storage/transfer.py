"""The driver-independent half of the transfer seam (`node.storage.base.TransferStore`): what a
fence reason may be, how an exported message looks, and the digest a verify step compares."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence

from node.models import Message, QueueDigest, is_id
from node.storage.base import TransferStore

# A fence reason travels as the value of an HTTP header (`X-Marconi-Fence`).
REASON = re.compile(r"[a-z][a-z0-9-]{0,31}")
DIGEST_BATCH = 1000


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


def _line(m: Message) -> bytes:
    # Only what can differ between two copies of a message: ttl changes only with `expires`,
    # and created, delay and client id never change after the post.
    fields = [m.id, int(m.marker), m.body, float(m.expires), m.claim_id, float(m.claim_expires)]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + b"\n"


async def digest(store: TransferStore, project: str, queue: str) -> QueueDigest:
    """`TransferStore.digest`, written once over the store's exports."""
    sha = hashlib.sha256()
    count = top = 0
    while True:
        page = await store.export_messages(project, queue, after_marker=top, limit=DIGEST_BATCH)
        for m in page:
            sha.update(_line(m))
        if page:
            count += len(page)
            top = page[-1].marker
        if len(page) < DIGEST_BATCH:
            break
        await asyncio.sleep(0)  # SQLite exports never suspend: let the loop run between pages
    claims = await store.export_claims(project, queue)
    return QueueDigest(count, top, sha.hexdigest(), tuple(sorted(c.id for c in claims)))
