"""What a post to a queue with subscriptions owes, on record before its messages are: the
MongoDB driver's half of "the outbox in the same write as the messages" (see `outbox`).

A post writes an intent first (alongside the reservation of its markers: no wait of its own),
then its messages in one ordered `insert_many`, the first of which carries `owes: true`. The
intent holds everything its deliveries need (subscriptions, notices, when it was posted) and
the first message's id, which is also the intent's `_id`. Deliverers turn intents into
deliveries (`promote`) once they know whether the post was stored:
- stored when its first message is there (an ordered insert writes it before any other), or
  when that message was there and went: whoever removes a message that owes (a delete, a
  claim's delete, a pop, expiry, purge, a dead letter's discard) first writes the post's
  evidence (`keep`), a unique insert into `outbox_stored`, while the intent still exists;
- not stored when neither is found, once the intent is older than `GRACE`: the deliverer then
  blocks the first message's id with a hidden document (a queue name no reader asks for) and
  looks for the evidence again. The post, if it was only slow, can no longer store that group
  (its insert collides and it fails, unacknowledged); if the message went in and out before
  the block, its evidence is there.
Every decision rests on unique inserts, reads, and deletes by `_id`: no conditional update,
which FerretDB 1.x applies as a read then a write. Intents are removed once promoted or
dropped; evidence with them, and evidence left over by a removal that raced a promotion is
collected after `GRACE`. A message that does not owe costs its removal nothing more (the
removals ask for `owes` not true first; only the first message of a subscribed queue's group
takes the second step).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from node.storage.mongodb.documents import Doc, duplicates
from node.storage.outbox import NOTIFICATION

Clock = Callable[[], float]
GRACE = 10.0  # seconds a post may take from its intent to its messages before it is judged
BLOCKED = "\x7fblocked:"  # names the queue of a document holding a dropped post's first id
BLOCK_FOR = 7 * 86400.0  # how long such a document holds it (collected as an expired message)
SWEEP = 60.0  # seconds between two collections of stray evidence, per process
NOT_OWING = {"owes": {"$ne": True}}
OWING = {"owes": True}


@dataclass(frozen=True)
class Decided:
    deliveries: list[Doc]  # outbox documents of the posts found stored
    intents: list[str]  # the intents decided: stored, or dropped
    evidenced: list[str]  # the evidence read (to go with its intent)


class Owed:
    def __init__(
        self,
        intent_docs: AsyncCollection[Doc],
        evidence_docs: AsyncCollection[Doc],
        message_docs: AsyncCollection[Doc],
        subscription_docs: AsyncCollection[Doc],
        clock: Clock,
    ) -> None:
        self.intents = intent_docs
        self.evidence = evidence_docs
        self._messages = message_docs
        self._subscriptions = subscription_docs
        self._clock = clock
        self._swept = 0.0  # monotonic time of the last collection of stray evidence

    async def create_indexes(self) -> None:
        await self.intents.create_index("posted")
        await self.intents.create_index([("project", ASCENDING), ("queue", ASCENDING)])
        await self.evidence.create_index("at")
        await self.evidence.create_index([("project", ASCENDING), ("queue", ASCENDING)])

    # --- the post path -------------------------------------------------------------------------

    async def intend(
        self, project: str, queue: str, subscribers: list[Doc], docs: list[Doc], now: float
    ) -> None:
        """Record what the group `docs` (not stored yet, in marker order) owes `subscribers`,
        and mark its first message as the one that owes."""
        first = docs[0]
        first["owes"] = True
        notices = [
            {"ttl": d["ttl"], "body": json.loads(d["body"]), "Message_Type": NOTIFICATION,
             "queue_name": queue}
            for d in docs
        ]  # fmt: skip
        intent = {
            "_id": str(first["_id"]),
            "project": project,
            "queue": queue,
            "subscriptions": [
                {
                    "id": str(s["_id"]),
                    "subscriber": s["subscriber"],
                    "options": s["options"],
                    "confirmed": bool(s.get("confirmed")),
                }
                for s in subscribers
            ],
            "notices": json.dumps(notices),
            "posted": now,
        }
        with contextlib.suppress(DuplicateKeyError):  # written by an earlier attempt
            await self.intents.insert_one(intent)

    # --- removals ------------------------------------------------------------------------------

    async def keep(self, docs: Iterable[Doc]) -> None:
        """Before message documents go: the evidence of each owing one whose intent is still
        undecided (its deliverer will find the post stored)."""
        owing = [str(d["_id"]) for d in docs if d.get("owes")]
        if not owing:
            return
        undecided = [
            i async for i in self.intents.find({"_id": {"$in": owing}}, {"project": 1, "queue": 1})
        ]
        if not undecided:
            return
        now = self._clock()
        evidence = [
            {"_id": i["_id"], "project": i["project"], "queue": i["queue"], "at": now}
            for i in undecided
        ]
        try:
            await self.evidence.insert_many(evidence, ordered=False)
        except BulkWriteError as exc:
            duplicates(exc)  # there already

    async def remove(self, query: Doc, expected: int | None = None) -> int:
        """Delete the messages `query` matches, the evidence of those that owe kept first; how
        many went. `expected`: how many the caller thinks match (none owing then costs one
        round trip)."""
        gone = int((await self._messages.delete_many({**query, **NOT_OWING})).deleted_count)
        if expected is not None and gone >= expected:
            return gone
        owing = [d async for d in self._messages.find({**query, **OWING}, {"owes": 1})]
        if owing:
            await self.keep(owing)
            ids = [d["_id"] for d in owing]
            removed = await self._messages.delete_many({**query, "_id": {"$in": ids}})
            gone += int(removed.deleted_count)
        return gone

    # --- the deliverers ------------------------------------------------------------------------

    async def promote(
        self,
        fenced: set[tuple[str, str]],
        *,
        limit: int,
        scope: tuple[str, str] | None = None,
        check: bool = True,
    ) -> Decided:
        """Decide the oldest intents (of `scope` only, if given). The caller inserts the
        deliveries, then `settle`s. Intents of `fenced` queues are left to their migration;
        young ones whose first message is not found yet, to a later call. `check`: owe only
        subscriptions that still live (else their deliverer checks)."""
        now = self._clock()
        query: Doc = {} if scope is None else {"project": scope[0], "queue": scope[1]}
        cursor = self.intents.find(query).sort("posted", ASCENDING).limit(limit)
        intents = [i async for i in cursor if (i["project"], i["queue"]) not in fenced]
        if not intents:
            return Decided([], [], [])
        there, evidenced = await self._stored(intents)
        stale = [
            i for i in intents if i["_id"] not in there | evidenced and i["posted"] <= now - GRACE
        ]
        if stale:
            late, late_evidenced = await self._block(stale, now)
            there, evidenced = there | late, evidenced | late_evidenced
        stored = [i for i in intents if i["_id"] in there | evidenced]
        return Decided(
            deliveries=_deliveries(stored, await self._alive(stored, now) if check else None),
            intents=[i["_id"] for i in stored + [i for i in stale if i not in stored]],
            evidenced=sorted(evidenced),
        )

    async def settle(self, decided: Decided) -> None:
        """The intents decided (their deliveries inserted, or none owed) go, with their
        evidence."""
        if decided.intents:
            await self.intents.delete_many({"_id": {"$in": decided.intents}})
        if decided.evidenced:
            await self.evidence.delete_many({"_id": {"$in": decided.evidenced}})

    async def _stored(self, intents: list[Doc]) -> tuple[set[str], set[str]]:
        """The posts among `intents` whose first message is stored, and those whose first
        message was (its evidence). Read in that order: a removal writes the evidence before
        the message goes."""
        firsts = [ObjectId(i["_id"]) for i in intents]
        there = {
            str(d["_id"])
            async for d in self._messages.find({"_id": {"$in": firsts}, **OWING}, {"_id": 1})
        }
        rest = [i["_id"] for i in intents if i["_id"] not in there]
        if not rest:
            return there, set()
        evidence = self.evidence.find({"_id": {"$in": rest}}, {"_id": 1})
        return there, {e["_id"] async for e in evidence}

    async def _block(self, stale: list[Doc], now: float) -> tuple[set[str], set[str]]:
        """Hold the first ids of `stale` posts (none of whose messages was found), so that no
        late insert stores them; return the posts found stored after all (as `_stored`)."""
        blocks = [
            {
                "_id": ObjectId(i["_id"]),
                "project": i["project"],
                "queue": BLOCKED + i["_id"],  # one of its own: markers are unique per queue
                "marker": 0,
                "expires": now + BLOCK_FOR,
            }
            for i in stale
        ]
        try:
            await self._messages.insert_many(blocks, ordered=False)
        except BulkWriteError as exc:
            duplicates(exc)  # held already: by the post's first message, or by a block
        # Read again: a first message that went in before its block is there still, or its
        # removal left evidence.
        return await self._stored(stale)

    async def _alive(self, intents: list[Doc], now: float) -> set[str]:
        """The subscriptions of `intents` that live: one deleted or expired since the post is
        owed nothing (what `forget_owed` removed from the outbox must not come back)."""
        wanted = {s["id"] for i in intents for s in i["subscriptions"]}
        if not wanted:
            return set()
        keys = [ObjectId(s) if ObjectId.is_valid(s) else s for s in wanted]
        cursor = self._subscriptions.find(
            {"_id": {"$in": keys}, "expires": {"$gt": now}}, {"_id": 1}
        )
        return {str(s["_id"]) async for s in cursor}

    async def collect(self) -> None:
        """Evidence left by a removal that raced its intent's promotion (now and then)."""
        if time.monotonic() - self._swept < SWEEP:
            return
        self._swept = time.monotonic()
        cursor = self.evidence.find({"at": {"$lte": self._clock() - GRACE}}, {"_id": 1})
        old = [e["_id"] async for e in cursor.limit(1000)]
        if not old:
            return
        undecided = {i["_id"] async for i in self.intents.find({"_id": {"$in": old}}, {"_id": 1})}
        stray = [e for e in old if e not in undecided]
        if stray:
            await self.evidence.delete_many({"_id": {"$in": stray}})

    # --- queues ---------------------------------------------------------------------------------

    async def forget(self, project: str, queue: str) -> None:
        """The queue's undecided posts owe nothing any more (the queue went, or moved away)."""
        scope = {"project": project, "queue": queue}
        await self.intents.delete_many(scope)
        await self.evidence.delete_many(scope)

    async def depth(self) -> int:
        """Deliveries the undecided intents stand for."""
        total = 0
        async for i in self.intents.find({}, {"subscriptions.id": 1}):
            total += len(i.get("subscriptions", []))
        return total


def _deliveries(intents: list[Doc], alive: set[str] | None) -> list[Doc]:
    """One delivery per subscription each post owed (that is `alive`, if known)."""
    return [
        {
            "_id": f"{i['_id']}:{s['id']}",
            "project": i["project"],
            "queue": i["queue"],
            "subscription": s["id"],
            "subscriber": s["subscriber"],
            "options": s["options"],
            "confirmed": s["confirmed"],
            "notices": i["notices"],
            "posted": i["posted"],
            "due": i["posted"],
            "failures": 0,
            "sent": 0,
            "owner": "",
            "lease": "",  # a new delivery: no claim on it was ever made
        }
        for i in intents
        for s in i["subscriptions"]
        if alive is None or s["id"] in alive
    ]
