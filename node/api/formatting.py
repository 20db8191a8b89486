"""Response bodies for messages, claims and stats, as each API version shapes them."""

from __future__ import annotations

import time
from typing import Any

from node.models import Message, MessageSummary, QueueStats


def message_href(base: str, message_id: str, claim_id: str | None = None) -> str:
    """`base` is the queue's path, `/v2/queues/name`."""
    href = f"{base}/messages/{message_id}"
    return f"{href}?claim_id={claim_id}" if claim_id else href


def message_v1(m: Message, base: str, now: float, claim_id: str | None = None) -> dict[str, Any]:
    return {
        "href": message_href(base, m.id, claim_id),
        "ttl": m.ttl,
        "age": m.age(now),
        "body": m.body,
    }


def message_v1_1(m: Message, base: str, now: float, claim_id: str | None = None) -> dict[str, Any]:
    return {
        "id": m.id,
        "href": message_href(base, m.id, claim_id),
        "ttl": m.ttl,
        "age": m.age(now),
        "body": m.body,
    }


def held_by(m: Message, now: float) -> str | None:
    return m.claim_id if m.is_claimed(now) else None


def iso8601(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _end(summary: MessageSummary, base: str, now: float) -> dict[str, Any]:
    return {
        "href": message_href(base, summary.id),
        "age": max(0, int(now - summary.created)),
        "created": iso8601(summary.created),
    }


def stats(s: QueueStats, base: str, now: float) -> dict[str, Any]:
    messages: dict[str, Any] = {"claimed": s.claimed, "free": s.free, "total": s.total}
    if s.total and s.oldest is not None and s.newest is not None:
        messages["oldest"] = _end(s.oldest, base, now)
        messages["newest"] = _end(s.newest, base, now)
    return {"messages": messages}
