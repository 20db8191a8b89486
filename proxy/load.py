"""What a rebalance is planned on: the catalog's placements and each queue's message count.

Message counts come from the owning partition's nodes (`GET /v2/queues/{queue}/stats`, or v1 for
queues without a project), through the proxy's forwarder, a bounded number at a time. Bytes and
request rates are not measured: the nodes report neither per queue (their request metrics are
labelled by route template, not by queue). Above `stats_limit` queues, no stats are read and
the plan counts queues alone, so a rebalance of a huge cluster stays one quick admin request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence

from multidict import CIMultiDict

from catalog.catalog import Catalog
from catalog.planner import QueueLoad
from catalog.records import Partition, Placement
from ground.logs import get_logger
from proxy.errors import ProxyError
from proxy.forward import Forwarder, Outgoing

log = get_logger("proxy.load")

PAGE = 1000
# The admin API's own client id in requests it sends to nodes.
CLIENT_ID = "6d61726b-6f6e-4900-8000-61646d696e00"


class LoadReader:
    def __init__(
        self,
        catalog: Catalog,
        forwarder: Forwarder,
        *,
        concurrency: int = 16,
        stats_limit: int = 10_000,
    ) -> None:
        self.catalog = catalog
        self.forwarder = forwarder
        self.concurrency = concurrency
        self.stats_limit = stats_limit

    async def placements(self) -> list[Placement]:
        """Every placement in the catalog, by key (a scan: for admin requests only)."""
        found: list[Placement] = []
        start = ""
        prefix = self.catalog.keys.placements
        while True:
            page = await self.catalog.store.range(prefix, start, PAGE)
            found.extend(Placement.from_json(item.value) for item in page)
            if len(page) < PAGE:
                return found
            start = page[-1].key

    async def loads(
        self, placements: Sequence[Placement], partitions: Mapping[str, Partition]
    ) -> tuple[list[QueueLoad], list[str]]:
        """Each placed queue's load, and the measures taken ("queues", maybe "messages").

        A queue whose stats cannot be read (its partition down, say) counts 0 messages.
        """
        if len(placements) > self.stats_limit:
            return [QueueLoad(p.project, p.queue, p.partition) for p in placements], ["queues"]
        gate = asyncio.Semaphore(self.concurrency)

        async def one(placement: Placement) -> QueueLoad:
            async with gate:
                count = await self._messages(placement, partitions.get(placement.partition))
            return QueueLoad(placement.project, placement.queue, placement.partition, count)

        found = await asyncio.gather(*(one(p) for p in placements))
        return list(found), ["queues", "messages"]

    async def _messages(self, placement: Placement, partition: Partition | None) -> int:
        if partition is None:
            return 0
        headers = CIMultiDict({"Client-ID": CLIENT_ID, "Accept": "application/json"})
        if placement.project:
            headers["X-Project-ID"] = placement.project
            path = f"/v2/queues/{placement.queue}/stats"
        else:
            path = f"/v1/queues/{placement.queue}/stats"  # v1: queues without a project
        try:
            out = Outgoing("GET", path, headers, b"")
            answer = await self.forwarder.send(partition, out)
            if answer.status != 200:
                return 0
            stats = json.loads(answer.body)
            return int(stats["messages"]["total"])
        except (ProxyError, TimeoutError, ValueError, KeyError, TypeError):
            log.warning(
                "queue_stats_unreadable",
                project=placement.project,
                queue=placement.queue,
                partition=placement.partition,
            )
            return 0
