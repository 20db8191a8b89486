"""What a rebalance is planned on: the catalog's placements and each queue's message count.

Message counts come from the owning partition's nodes (`GET /v2/queues/{queue}/stats`, or v1 for
queues without a project), through the proxy's forwarder, a bounded number at a time. Bytes and
request rates are not measured: the nodes report neither per queue (their request metrics are
labelled by route template, not by queue). Above `stats_limit` queues, no stats are read and
the plan counts queues alone, so a rebalance of a huge cluster stays one quick admin request.

The catalog is read a page at a time at one revision and never held whole: above `stats_limit`
queues a rebalance keeps a `Census` (counts and the first movable queues of each partition), and
a drain keeps counts and the draining partition's first queues (`DrainSurvey`).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from multidict import CIMultiDict

from catalog import scan
from catalog.catalog import Catalog
from catalog.planner import Census, QueueId, QueueLoad
from catalog.records import Partition, Placement
from ground.logs import get_logger
from proxy.errors import ProxyError
from proxy.forward import Forwarder, Outgoing
from wire.topics import is_topic, topic_name

log = get_logger("proxy.load")

# The admin API's own client id in requests it sends to nodes.
CLIENT_ID = "6d61726b-6f6e-4900-8000-61646d696e00"


@dataclass
class DrainSurvey:
    """What a drain of one partition needs of the catalog, read a page at a time."""

    owned: int = 0  # queues the partition owns now
    cooling_down: int = 0  # of those, how many moved too recently to move again
    counts: Counter[str] = field(default_factory=Counter)  # queues per partition, on arrival
    first: list[Placement] = field(default_factory=list)  # its first movable queues, by name


class LoadReader:
    def __init__(
        self,
        catalog: Catalog,
        forwarder: Forwarder,
        *,
        concurrency: int = 16,
        stats_limit: int = 10_000,
        page_size: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.forwarder = forwarder
        self.concurrency = concurrency
        self.stats_limit = stats_limit
        self.page_size = page_size or catalog.store.page_size

    async def pages(self) -> AsyncIterator[list[Placement]]:
        """Every placement in the catalog, a page at a time at one revision (admin requests)."""
        prefix = self.catalog.keys.placements
        async for page in scan.pages(self.catalog.store, prefix, self.page_size):
            yield [Placement.from_json(item.value) for item in page.items]

    async def survey(
        self, heading: Mapping[QueueId, str], busy: Collection[QueueId], keep: int
    ) -> tuple[list[Placement], Census | None]:
        """The placements themselves while there are at most `stats_limit`; beyond, a census
        counting each queue where it is `heading` (and movable unless `busy`)."""
        small: list[Placement] = []
        census: Census | None = None

        def count(p: Placement, census: Census) -> None:
            ident = (p.project, p.queue)
            census.add(ident, heading.get(ident, p.partition), ident not in busy)

        async for page in self.pages():
            if census is None:
                small.extend(page)
                if len(small) > self.stats_limit:
                    census = Census(keep)
                    for p in small:
                        count(p, census)
                    small = []
            else:
                for p in page:
                    count(p, census)
        return small, census

    async def drain_survey(
        self,
        name: str,
        heading: Mapping[QueueId, str],
        busy: Collection[QueueId],
        in_flight: Collection[QueueId],
        keep: int,
    ) -> DrainSurvey:
        """Partition `name`'s queues counted, and its first `keep` movable ones (by name, where
        they are `heading`), with every partition's count on arrival."""
        survey = DrainSurvey()
        first = survey.first
        async for page in self.pages():
            for p in page:
                ident = (p.project, p.queue)
                if p.partition == name:
                    survey.owned += 1
                    survey.cooling_down += ident in busy and ident not in in_flight
                bound = heading.get(ident, p.partition)
                survey.counts[bound] += 1
                if bound == name and ident not in busy:
                    first.append(replace(p, partition=bound))
                    if len(first) >= 2 * keep:
                        first.sort(key=_by_name)
                        del first[keep:]
        first.sort(key=_by_name)
        del first[keep:]
        return survey

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
        if is_topic(placement.queue):  # v2 only, so never without a project
            headers["X-Project-ID"] = placement.project
            path = f"/v2/topics/{topic_name(placement.queue)}/stats"
        elif placement.project:
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


def _by_name(p: Placement) -> QueueId:
    return (p.project, p.queue)
