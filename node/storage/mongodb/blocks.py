"""A queue's messages in marker order, read a block of markers at a time where the server cannot
sort them (FerretDB 1.x over PostgreSQL).

MongoDB serves `find(query).sort(marker).limit(n)` from the `(project, queue, marker)` index.
FerretDB 1.x does not: it pushes down to its PostgreSQL backend only equalities of top-level
scalar fields (no ranges, no `$in`, no `$or`, no sort: measured, and so its query builder reads),
then decodes every document that comes back, filters, and sorts in its own process. A page of a
queue would decode the whole queue there (6.5 s at 20,000 messages on a loaded machine; the same
page read as below: a few milliseconds of decoding).

So on such a server each message also carries `block` (its marker // `BLOCK`), and a read asks for
whole blocks by equality (`project`, `queue`, `block`: pushed down), a few at once, upward from
where the queue's live messages begin; the rest of the query is applied here, and the few
documents found are sorted here. A block comes back with at most `BLOCK` documents, whatever the
queue's size. Markers are dense (a counter), so the blocks between two live messages are only
those emptied by deletes: each process keeps a low-water mark per queue, the first block that may
hold a live message, and starts there.

The low-water mark starts at the first block, and is seeded in the background by one sorted read
of the queue's first marker (the server's in-process sort over the whole queue: once per queue
per `RESEED` seconds, and no read waits for it), made `SETTLE` seconds after a read of the
counter and taken no higher than it; it moves up past blocks found empty whose
every marker has landed: a post reserves its markers, then inserts, so a block that looks empty
may still receive one in flight. A marker has landed if this process saw its message stored (a
read of its block found it), or if it was reserved at least `SETTLE` seconds ago (markers this
process never saw: consumed between its reads, or given up). A message that lands later still
below the mark is read again after the next seed. The mark is dropped when the queue's
document is another one (the queue was deleted and created again) or its counter is below it,
and when this process learns that markers were imported (`forget`).

A server that cannot push equalities down either (FerretDB over SQLite: only an `_id` alone) and
MongoDB get the plain sorted query.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from node.storage.mongodb.documents import Doc, queue_key

BLOCK = 32  # markers per block
FULL = (1 << BLOCK) - 1
WIDEST = 8  # blocks read at once, at most (a read that comes back short asks for twice as many)
# Seconds after which a reservation of markers is taken to have landed or failed (for a block
# some of whose markers this process never saw stored).
SETTLE = 30.0
RESEED = 300.0  # seconds a low-water mark is trusted before the queue's first marker is read again
# Blocks a migration's read reads before it sorts the rest instead, beyond twice what it asked.
TRANSFER_BLOCKS = 16

Key = tuple[str, str]


def block_of(marker: int) -> int:
    return marker // BLOCK


def matches(doc: Doc, query: Doc) -> bool:
    """Does `doc` match `query`, in the subset of MongoDB's query language the driver sends:
    equality, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in` on top-level fields."""
    for name, want in query.items():
        have = doc.get(name)
        if not isinstance(want, dict):
            if have != want:
                return False
            continue
        for op, value in want.items():
            if not _holds(op, have, value):
                return False
    return True


def _holds(op: str, have: Any, value: Any) -> bool:
    if op == "$eq":
        return bool(have == value)
    if op == "$ne":
        return bool(have != value)
    if op == "$in":
        return have in value
    if have is None:  # MongoDB compares a missing field with no number
        return False
    if op == "$gt":
        return bool(have > value)
    if op == "$gte":
        return bool(have >= value)
    if op == "$lt":
        return bool(have < value)
    if op == "$lte":
        return bool(have <= value)
    raise ValueError(f"operator {op} is not evaluated here")


@dataclass
class _Low:
    """Where a queue's live messages begin, as this process last knew it."""

    block: int
    incarnation: ObjectId | None  # the `_id` of the queue's document
    seeded: float  # monotonic time of the seed
    # How many blocks above it the last read from it found the first live message: the next
    # read from it asks for that many more at once (blocks emptied, not yet settled).
    ahead: int = 0
    # The markers this process saw stored, by block (a bit each), for the blocks from `block` on.
    seen: dict[int, int] = field(default_factory=dict)

    def landed(self, block: int, docs: list[Doc]) -> bool:
        """Record the markers of `docs`, read from `block`; has every marker of it landed?"""
        mask = self.seen.get(block, 1 if block == 0 else 0)  # marker 0 is never handed out
        for doc in docs:
            mask |= 1 << (int(doc["marker"]) - block * BLOCK)
        self.seen[block] = mask
        return mask == FULL

    def past(self, block: int) -> None:
        """Nothing live is left below `block`, nor can land there."""
        self.block = block
        for b in [b for b in self.seen if b < block]:
            del self.seen[b]

    # Counter values, each with the monotonic time this process first saw it.
    counters: list[tuple[float, int]] = field(default_factory=list)

    def settled(self, now: float) -> int:
        """The highest counter value seen at least `SETTLE` seconds ago (its markers landed)."""
        old = [value for seen, value in self.counters if now - seen >= SETTLE]
        return max(old, default=0)

    def saw(self, counter: int, now: float) -> None:
        if not self.counters or counter > self.counters[-1][1]:
            self.counters.append((now, counter))
        settled = [c for c in self.counters if now - c[0] >= SETTLE]
        self.counters = settled[-1:] + [c for c in self.counters if now - c[0] < SETTLE]


class Blocks:
    """Reads of a queue's messages in marker order; by blocks where `enabled` (see the module)."""

    def __init__(
        self, message_docs: AsyncCollection[Doc], queue_docs: AsyncCollection[Doc]
    ) -> None:
        self._messages = message_docs
        self._queues = queue_docs
        self.enabled = False  # set by `Database.create_indexes` from what the server pushes down
        self._lows: dict[Key, _Low] = {}
        self._seeding: set[asyncio.Future[None]] = set()

    def forget(self, project: str, queue: str) -> None:
        """Markers were imported into the queue: where it begins is read again."""
        self._lows.pop((project, queue), None)

    async def find(
        self, project: str, queue: str, query: Doc, *, after: int, limit: int, now: float
    ) -> list[Doc]:
        """Up to `limit` documents of the queue matching `query` (which names the project and the
        queue) with a marker above `after`, in marker order. `now` tells expired documents,
        which never come back, from live ones."""
        if limit <= 0:
            return []
        if not self.enabled:
            plain = {**query, "marker": {"$gt": after}}
            return await self._messages.find(plain).sort("marker", ASCENDING).to_list(limit)
        while True:
            found = await self._scan(project, queue, query, after, limit, now)
            if found is not None:
                return found
            # The low-water mark was not the queue's: read again from a new seed.

    async def _scan(
        self, project: str, queue: str, query: Doc, after: int, limit: int, now: float
    ) -> list[Doc] | None:
        key = (project, queue)
        low = self._low(key)
        start = max(block_of(after + 1), low.block)
        # The mark may move up past blocks that this read finds empty, if it starts there.
        moving = start == low.block
        found: list[Doc] = []
        span, at, top = min(low.ahead + 1, WIDEST) if moving else 1, start, -1
        first_live = -1
        while True:
            blocks = range(at, at + span)
            reads = [self._block(project, queue, b) for b in blocks]
            if top < 0:  # the first read: the counter says where the queue ends
                queue_doc, read = await asyncio.gather(self._queue_doc(key), asyncio.gather(*reads))
                if queue_doc is None:  # no queue (the caller's fence check tells why)
                    self._drop(key, low)
                    return []
                if not self._current(key, low, queue_doc):
                    return None
                top = block_of(int(queue_doc["counter"]))
            else:
                read = list(await asyncio.gather(*reads))
            clock = time.monotonic()
            for b, docs in zip(blocks, read, strict=True):
                live = [d for d in docs if d["expires"] > now]
                if live and first_live < 0:
                    first_live = b
                landed = low.landed(b, docs) or (b + 1) * BLOCK - 1 <= low.settled(clock)
                if moving and not live and landed:
                    low.past(b + 1)
                else:
                    moving = False
                docs.sort(key=lambda d: int(d["marker"]))
                found += [d for d in docs if d["marker"] > after and matches(d, query)]
            at += span
            if len(found) >= limit or at > top:
                if start <= low.block <= first_live:
                    low.ahead = first_live - low.block
                return found[:limit]
            span = min(span * 2, WIDEST)

    async def _block(
        self, project: str, queue: str, block: int, fields: Doc | None = None
    ) -> list[Doc]:
        return await self._messages.find(
            {"project": project, "queue": queue, "block": block}, fields
        ).to_list()

    # --- reads for a migration (no low-water mark: each call says where it starts) -------------

    async def ranged(
        self,
        project: str,
        queue: str,
        query: Doc,
        *,
        after: int,
        limit: int,
        fields: Doc | None = None,
    ) -> list[Doc]:
        """Up to `limit` documents of the queue matching `query` (which names the project and
        the queue; it may compare `expires`) with a marker above `after`, in marker order, with
        `fields` (None: all; else with `marker` and what `query` names too). Where blocks are
        read: the blocks from `after` up to the counter's, a few at once, so that a read costs
        about `limit` documents decoded, not the queue; after `TRANSFER_BLOCKS` blocks more than
        `limit` could fill (a sparse queue), one sorted read for the rest, which costs the
        queue once."""
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        if not self.enabled:
            plain = {**query, "marker": {"$gt": after}}
            return await self._messages.find(plain, fields).sort("marker", ASCENDING).to_list(limit)
        if fields is not None:  # what `query` compares is read too
            fields = {**fields, **dict.fromkeys(query, 1), "marker": 1}
        at = block_of(after + 1)
        budget = TRANSFER_BLOCKS + 2 * -(-limit // BLOCK)
        span = min(block_of(after + limit) - at + 1, WIDEST)  # markers are dense, mostly
        found: list[Doc] = []
        top = -1
        while True:
            blocks = range(at, at + span)
            reads = [self._block(project, queue, b, fields) for b in blocks]
            if top < 0:
                queue_doc, read = await asyncio.gather(
                    self._queue_doc((project, queue)), asyncio.gather(*reads)
                )
                if queue_doc is None:
                    return []
                top = block_of(int(queue_doc["counter"]))
            else:
                read = list(await asyncio.gather(*reads))
            for docs in read:
                docs.sort(key=lambda d: int(d["marker"]))
                found += [d for d in docs if d["marker"] > after and matches(d, query)]
            at += span
            budget -= span
            if len(found) >= limit or at > top:
                return found[:limit]
            if budget <= 0:
                rest = {**query, "marker": {"$gt": at * BLOCK - 1}}
                cursor = self._messages.find(rest, fields).sort("marker", ASCENDING)
                return found + await cursor.to_list(limit - len(found))
            span = min(span * 2, WIDEST)

    async def highest(self, project: str, queue: str, counter: int) -> int | None:
        """The highest marker stored above `counter` (a lost update of FerretDB's counter can
        leave it below markers handed out), None if none. Where blocks are read: the blocks
        from the counter's up (a sorted read would decode the whole queue)."""
        if not self.enabled:
            top = await self._messages.find_one(
                {"project": project, "queue": queue}, {"marker": 1}, sort=[("marker", -1)]
            )
            return None if top is None or top["marker"] <= counter else int(top["marker"])
        near = range(block_of(counter), block_of(counter) + 2)  # a lost update: a few markers
        read = await asyncio.gather(*(self._block(project, queue, b, {"marker": 1}) for b in near))
        above = [int(d["marker"]) for docs in read for d in docs if d["marker"] > counter]
        return max(above, default=None)

    async def holding(self, project: str, queue: str, docs: list[Doc]) -> dict[Any, Doc]:
        """The stored documents with the `_id`s of `docs`, by `_id`: where blocks are read,
        found in the blocks of their markers, and those not there by `_id` alone, one read
        each (an `$in` is filtered by FerretDB itself, over the whole partition)."""
        ids = {doc["_id"] for doc in docs}
        if not self.enabled:
            return {d["_id"]: d async for d in self._messages.find({"_id": {"$in": list(ids)}})}
        blocks = sorted({block_of(int(doc["marker"])) for doc in docs})
        read = await asyncio.gather(*(self._block(project, queue, b) for b in blocks))
        stored = {d["_id"]: d for found in read for d in found if d["_id"] in ids}
        elsewhere = [i for i in ids if i not in stored]
        for doc in await asyncio.gather(*(self._messages.find_one({"_id": i}) for i in elsewhere)):
            if doc is not None:
                stored[doc["_id"]] = doc
        return stored

    async def _queue_doc(self, key: Key) -> Doc | None:
        return await self._queues.find_one(queue_key(*key), {"counter": 1})

    def _current(self, key: Key, low: _Low, queue_doc: Doc) -> bool:
        """Is `low` the mark of the queue whose document is `queue_doc`? Drops it if not (the
        queue was deleted and created again: another document, a lower counter)."""
        counter = int(queue_doc["counter"])
        if low.incarnation is None:  # not seeded yet: the queue it reads from now on
            low.incarnation = queue_doc["_id"]
        if queue_doc["_id"] == low.incarnation and block_of(counter) >= low.block:
            low.saw(counter, time.monotonic())
            return True
        self._drop(key, low)
        return False

    def _drop(self, key: Key, low: _Low) -> None:
        if self._lows.get(key) is low:
            del self._lows[key]

    def _low(self, key: Key) -> _Low:
        low = self._lows.get(key)
        clock = time.monotonic()
        if low is None:  # from the first block until the seed says more
            low = self._lows[key] = _Low(block=0, incarnation=None, seeded=clock)
            self._start_seed(key, low)
        elif clock - low.seeded >= RESEED:
            low.seeded = clock
            self._start_seed(key, low)
        return low

    def _start_seed(self, key: Key, low: _Low) -> None:
        seeding = asyncio.ensure_future(self._seed(key, low))
        self._seeding.add(seeding)
        seeding.add_done_callback(self._seeded)

    def _seeded(self, seeding: asyncio.Future[None]) -> None:
        self._seeding.discard(seeding)
        if not seeding.cancelled():
            seeding.exception()  # a failed seed is retried after RESEED: reads stay correct

    async def idle(self) -> None:
        """Wait for the seeds in flight (for tests that count commands)."""
        await asyncio.gather(*self._seeding, return_exceptions=True)

    async def close(self) -> None:
        for seeding in list(self._seeding):
            seeding.cancel()
        await self.idle()

    async def _seed(self, key: Key, low: _Low) -> None:
        """Move `low` up to the queue's first stored marker, read with the server's sort (over
        the whole queue on FerretDB: in the background, once in a while)."""
        project, queue = key
        # The counter first, then the first marker stored once every marker up to that counter
        # has landed (or failed): nothing can land below it after that.
        queue_doc = await self._queue_doc(key)
        await asyncio.sleep(SETTLE)
        first = await self._messages.find_one(
            {"project": project, "queue": queue}, {"marker": 1}, sort=[("marker", ASCENDING)]
        )
        if queue_doc is None or self._lows.get(key) is not low:
            return
        if low.incarnation is None:
            low.incarnation = queue_doc["_id"]
        elif low.incarnation != queue_doc["_id"]:
            return
        counter = int(queue_doc["counter"])
        begins = block_of(counter if first is None else min(int(first["marker"]), counter))
        if begins > low.block:
            low.past(begins)
