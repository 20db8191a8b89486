"""`GET /piles`: the dead letters waiting in this partition's outgoing piles, for the proxy's
admin API (`proxy.piles`): a drain is done, and a partition may be removed, only once every
letter piled here has reached its dead-letter queue (`node.storage.deadletters`).

Like `/metrics`, it sits outside the API versions: the proxy routes no client request to it,
and it names projects and queues, never a message.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from node.storage.base import Storage
from wire.answers import ok

# Letters read at most per answer (whole messages: a bounded read); beyond, `more` says so.
LIMIT = 100


class Piles:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get(self, request: web.Request) -> web.Response:
        """`{"waiting": n, "more": bool, "piles": [{"project", "queue", "waiting"}]}`, each
        pile named by the dead-letter queue its letters go to; `more` when there may be more
        than `n` (`LIMIT`)."""
        letters = await self.storage.dead_letters.waiting(limit=LIMIT)
        counts = Counter((o.project, o.queue) for o in letters)
        piles = [{"project": p, "queue": q, "waiting": n} for (p, q), n in sorted(counts.items())]
        return ok({"waiting": len(letters), "more": len(letters) >= LIMIT, "piles": piles})
