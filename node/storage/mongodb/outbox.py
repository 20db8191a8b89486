"""The MongoDB driver's outbox (`node.storage.outbox.OutboxStore`): one document per delivery
in `outbox`, its `due` the lease's expiry while it is held.

A post's deliveries and its messages are stored together or not at all, without transactions
(FerretDB 1.x has none, and `insert_many` is atomic per document, not per call, on MongoDB
too). The post writes what it owes first, as an intent (`owed`: the subscriptions and the
notices, alongside the reservation of its markers, so it waits for nothing more), then its
messages, the first of which carries `owes: true` in its own atomic write. Deliverers decide
each intent as they lease (`lease` calls `owed.promote` with the room its due deliveries
left): a post whose first message is
stored, or was stored and removed (every removal of a message that owes first leaves its
evidence, while its intent is undecided), gets its deliveries inserted here, one per
subscription, held by the deliverer that inserts them (up to its lease's limit); a post whose
first message is not found `owed.GRACE` seconds on has that id blocked (a hidden document a
late insert collides with), and owes nothing. So:
- nothing is notified that was not stored, and a post cut short after its messages (its
  process killed, its client unanswered) is notified all the same;
- a consumer's delete, a claim's delete, a pop, expiry or a purge never loses what a message
  owes, and leaves nothing hidden for good: intents go once decided, blocks expire, evidence
  goes with its intent (or, when a removal raced the decision, in a later sweep);
- a queue without subscriptions pays nothing: its posts write no intent, and its removals
  delete what does not owe in their one usual command.
A migration's export decides the queue's intents first (their deliveries move as deliveries);
the queue's drop, delete or `forget_owed` forgets its undecided ones, as SQLite's delete forgets
what a deleted queue owed.

Most queues have no subscriptions: like its fences (`node.storage.mongodb.fences`), a node that
found a queue without live subscriptions believes it for `QUIET` seconds without asking again,
so the posts of such a queue cost no command for it; a subscription made through this node
ends that at once (`forget`), one made through another node within `QUIET`.

A lease must not rest on a conditional update: FerretDB 1.x applies one as a read and then a
write, so two deliverers racing for one delivery would both take it (measured: 34 of 120
deliveries taken twice by 8 leasers at once). What both FerretDB and MongoDB make atomic is an
insert under a unique `_id`. So each delivery carries a `lease` token, new at every lease, and
a deliverer takes the candidates it read by inserting one claim per candidate into
`outbox_claims`, `_id` the delivery's id and the token it read (one `insert_many`): the claims
that went in are the deliveries it won; a duplicate key means another took that delivery (at
that token) first. It then marks its winnings held, with a new token (one `update_many`).
Claims go with their deliveries (`done`, `drop_outbox`, `forget_owed`). A delivery a lease
inserts itself is held without a claim: its insert under a unique `_id` was the arbitration.
Two deliverers may decide one intent at once: the second insert of its deliveries is a
duplicate, ignored, unless the first was already delivered and done, which sends it again (at
least once).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from node.storage.mongodb.documents import Doc, backend, duplicates
from node.storage.mongodb.owed import Owed
from node.storage.outbox import Deliveries, Delivery, Nudge

Clock = Callable[[], float]
QUIET = 0.05  # seconds a node takes a queue found without subscriptions to stay so
QUIET_QUEUES = 10_000  # queues a node remembers as without subscriptions, at most
PROMOTE = 1000  # intents a migration's export decides at a time


def _document(d: Delivery) -> Doc:
    return {
        "_id": d.id,
        "project": d.project,
        "queue": d.queue,
        "subscription": d.subscription_id,
        "subscriber": d.subscriber,
        "options": json.dumps(d.options),  # keys may hold `$` and `.`
        "confirmed": d.confirmed,
        "notices": json.dumps(d.notices),
        "posted": d.posted,
        "due": d.due,
        "failures": d.failures,
        "sent": d.sent,
        "owner": "",
        "lease": uuid.uuid4().hex,  # a claim's key, new at every lease (see above)
    }


def _delivery(doc: Doc) -> Delivery:
    return Delivery(
        id=doc["_id"],
        project=doc["project"],
        queue=doc["queue"],
        subscription_id=doc["subscription"],
        subscriber=doc["subscriber"],
        options=json.loads(doc["options"]),
        confirmed=bool(doc["confirmed"]),
        notices=json.loads(doc["notices"]),
        posted=float(doc["posted"]),
        due=float(doc["due"]),
        failures=int(doc["failures"]),
        sent=int(doc["sent"]),
    )


class MongoOutbox:
    def __init__(
        self,
        docs: AsyncCollection[Doc],
        subscription_docs: AsyncCollection[Doc],
        fence_docs: AsyncCollection[Doc],
        clock: Clock,
        message_docs: AsyncCollection[Doc],
    ) -> None:
        self.docs = docs
        # One claim per lease taken: its unique `_id` is what makes a lease one holder's.
        self.claims = docs.database["outbox_claims"]
        # What posts owe until a deliverer turns it into deliveries (see `owed`).
        self.owed = Owed(
            docs.database["outbox_intents"],
            docs.database["outbox_stored"],
            message_docs,
            subscription_docs,
            clock,
        )
        self._subscriptions = subscription_docs
        self._fences = fence_docs
        self._clock = clock
        self.written = Nudge()
        self._quiet: OrderedDict[tuple[str, str], float] = OrderedDict()  # -> believed until

    async def create_indexes(self) -> None:
        await self.docs.create_index("due")
        await self.docs.create_index([("project", ASCENDING), ("queue", ASCENDING)])
        await self.claims.create_index("delivery")
        await self.claims.create_index([("project", ASCENDING), ("queue", ASCENDING)])
        await self.owed.create_indexes()

    # --- the post path -------------------------------------------------------------------------

    async def subscribers(self, project: str, queue: str) -> list[Doc]:
        """The queue's live subscriptions, as a post owes them (one indexed query, none for a
        queue found without any less than `QUIET` seconds ago)."""
        key = (project, queue)
        until = self._quiet.get(key)
        if until is not None and until > time.monotonic():
            return []
        async with backend():
            cursor = self._subscriptions.find(
                {"project": project, "source": queue, "expires": {"$gt": self._clock()}},
                {"subscriber": 1, "options": 1, "confirmed": 1},
            )
            found = [doc async for doc in cursor]
        if found:
            self._quiet.pop(key, None)
        else:
            self._quiet[key] = time.monotonic() + QUIET
            self._quiet.move_to_end(key)
            while len(self._quiet) > QUIET_QUEUES:
                self._quiet.popitem(last=False)
        return found

    def forget(self, project: str, queue: str) -> None:
        """The queue may have subscriptions now: the next post asks."""
        self._quiet.pop((project, queue), None)

    async def owe(self, project: str, queue: str, docs: list[Doc], now: float) -> bool:
        """Before the group `docs` is stored: what it owes the queue's live subscriptions, on
        record (see `owed`). False when it owes nothing."""
        subscribers = await self.subscribers(project, queue)
        if subscribers:
            await self.owed.intend(project, queue, subscribers, docs, now)
        return bool(subscribers)

    async def _insert_new(self, docs: list[Doc]) -> list[Doc]:
        """Insert `docs`; those this call inserted (the others were there already)."""
        if not docs:
            return []
        async with backend():
            try:
                await self.docs.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                there = duplicates(exc)
                return [d for i, d in enumerate(docs) if i not in there]
            return docs

    async def _insert(self, docs: list[Doc]) -> int:
        if not docs:
            return 0
        async with backend():
            try:
                return len((await self.docs.insert_many(docs, ordered=False)).inserted_ids)
            except BulkWriteError as exc:
                duplicates(exc)  # already there: a retried write, or a repeated import
                return int(exc.details.get("nInserted", 0))

    async def forget_owed(self, project: str, queue: str, subscription: str | None = None) -> int:
        """Right after a subscription (or all of a queue's) is deleted: what is still owed to it
        goes too."""
        query = {"project": project, "queue": queue}
        if subscription is not None:
            query["subscription"] = subscription
        async with backend():
            gone = await self.docs.delete_many(query)
            await self.claims.delete_many(query)
            if subscription is None:
                await self.owed.forget(project, queue)
            return int(gone.deleted_count)

    # --- the deliverers -----------------------------------------------------------------------

    async def lease(self, owner: str, *, limit: int, lasts: float) -> Deliveries:
        now = self._clock()
        async with backend():
            fenced = {
                (f["project"], f["queue"])
                async for f in self._fences.find(
                    {"$or": [{"until": 0}, {"until": {"$gt": now}}, {"until": None}]},
                    {"project": 1, "queue": 1},
                )
            }
            held = {"owner": owner, "due": now + lasts, "lease": uuid.uuid4().hex}
            # The deliveries due first (the oldest: a dead holder's, retries), then the posts'
            # intents decided in the room left.
            cursor = self.docs.find({"due": {"$lte": now}}).sort("due", ASCENDING).limit(limit)
            candidates = [d async for d in cursor if (d["project"], d["queue"]) not in fenced]
            won = await self._claim(candidates, now)
            if won:
                ids = [d["_id"] for d in won]
                await self.docs.update_many({"_id": {"$in": ids}}, {"$set": held})
            taken = [_delivery({**d, **held}) for d in won]
            if len(taken) < limit:
                taken += (await self._promote(fenced, limit=limit - len(taken), held=held))[1]
            return taken

    async def _promote(
        self,
        fenced: set[tuple[str, str]],
        *,
        limit: int,
        scope: tuple[str, str] | None = None,
        held: Doc | None = None,
    ) -> tuple[int, Deliveries]:
        """Posts' intents decided: the deliveries of those stored inserted, then the intents
        removed; how many were decided, and the deliveries inserted `held` (up to `limit`).
        A delivery this call inserted is its own: the unique `_id` arbitrates, as a claim
        does (a duplicate is one another deliverer inserted first). A lease leaves the check
        that each subscription still lives to its deliverer; a migration's export checks."""
        decided = await self.owed.promote(fenced, limit=limit, scope=scope, check=held is None)
        docs = decided.deliveries
        if held is not None:
            docs = [{**d, **held} for d in docs[:limit]] + docs[limit:]
        inserted = await self._insert_new(docs)
        await self.owed.settle(decided)
        await self.owed.collect()
        taken = [_delivery(d) for d in inserted if held is not None and d["owner"] == held["owner"]]
        return len(decided.intents), taken

    async def _claim(self, candidates: list[Doc], now: float) -> list[Doc]:
        """The candidates this call won: those whose claim (delivery id and the lease token
        read with it) it inserted first."""
        if not candidates:
            return []
        claims = [
            {
                "_id": f"{d['_id']}:{d.get('lease', '')}",
                "delivery": d["_id"],
                "project": d["project"],
                "queue": d["queue"],
                "subscription": d["subscription"],
                "at": now,
            }
            for d in candidates
        ]
        try:
            await self.claims.insert_many(claims, ordered=False)
        except BulkWriteError as exc:
            lost = duplicates(exc)  # anything but a duplicate key is raised
            return [d for i, d in enumerate(candidates) if i not in lost]
        return candidates

    async def done(self, owner: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with backend():
            gone = await self.docs.delete_many({"_id": {"$in": list(ids)}, "owner": owner})
            if gone.deleted_count:
                await self.claims.delete_many({"delivery": {"$in": list(ids)}})
            return int(gone.deleted_count)

    async def retry(
        self, owner: str, delivery_id: str, *, due: float, failures: int, sent: int
    ) -> bool:
        async with backend():
            found = await self.docs.update_one(
                {"_id": delivery_id, "owner": owner},
                {"$set": {"due": due, "failures": failures, "sent": sent, "owner": ""}},
            )
            return found.matched_count > 0

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        await self._insert([_document(d) for d in deliveries])
        self.written.set()

    async def depth(self) -> int:
        async with backend():
            return int(await self.docs.count_documents({})) + await self.owed.depth()

    async def wait(self, seconds: float) -> None:
        await self.written.wait(seconds)

    async def export_outbox(self, project: str, queue: str) -> Deliveries:
        async with backend():
            # What the queue's posts owe moves with it: decided now (the queue is fenced).
            while (await self._promote(set(), limit=PROMOTE, scope=(project, queue)))[0]:
                pass
            cursor = self.docs.find({"project": project, "queue": queue}).sort("_id", ASCENDING)
            return [_delivery(d) async for d in cursor]

    async def import_outbox(self, project: str, queue: str, deliveries: Sequence[Delivery]) -> int:
        return await self._insert([_document(d) for d in deliveries])

    async def drop_outbox(self, project: str, queue: str) -> int:
        async with backend():
            gone = await self.docs.delete_many({"project": project, "queue": queue})
            await self.claims.delete_many({"project": project, "queue": queue})
            await self.owed.forget(project, queue)
            return int(gone.deleted_count)
