"""Whether a delivery's subscription is still there: a subscription deleted, or expired, after
the post receives nothing more (Zaqar sends only to the subscriptions it finds at the post).

A delete removes what is owed to the subscription in its own write where the driver allows it
(SQLite, PostgreSQL; right after it on MongoDB); an expiry removes nothing. So the deliverer
asks, once per lease and queue, which of the queue's subscriptions are live, and settles the
deliveries of the others unsent. A delivery retried later is leased, and asked about, again.
"""

from __future__ import annotations

from node.storage.base import SubscriptionStore
from node.storage.outbox import Deliveries


async def split_live(
    subscriptions: SubscriptionStore, taken: Deliveries
) -> tuple[Deliveries, list[str]]:
    """The deliveries among `taken` whose subscription is live, and the ids of the rest: one
    read of the live subscriptions per queue among them."""
    live: dict[tuple[str, str], set[str]] = {}
    for key in dict.fromkeys((d.project, d.queue) for d in taken):
        live[key] = {s.id for s in await subscriptions.live(*key)}
    kept = [d for d in taken if d.subscription_id in live[(d.project, d.queue)]]
    gone = [d.id for d in taken if d.subscription_id not in live[(d.project, d.queue)]]
    return kept, gone
