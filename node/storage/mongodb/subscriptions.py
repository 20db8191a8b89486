"""The MongoDB driver's subscriptions (`node.storage.base.SubscriptionStore`).

One document per subscription in `subscriptions`, unique by (project, source, subscriber);
options are stored as JSON text (their keys may hold `$` and `.`, which MongoDB refuses in field
names). Writes check the source's fence and then act, like the driver's other writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from node.errors import SubscriptionAlreadyExists, SubscriptionDoesNotExist, TransferConflict
from node.models import Subscription, is_id
from node.storage.base import Subscriptions
from node.storage.mongodb.documents import Doc, backend

if TYPE_CHECKING:
    from node.storage.mongodb.database import Database


def _live(project: str, source: str, now: float) -> Doc:
    return {"project": project, "source": source, "expires": {"$gt": now}}


def _document(project: str, sub: Subscription) -> Doc:
    return {
        "_id": ObjectId(sub.id),
        "project": project,
        "source": sub.source,
        "subscriber": sub.subscriber,
        "ttl": sub.ttl,
        "created": sub.created,
        "expires": sub.expires,
        "options": json.dumps(sub.options),
        "confirmed": sub.confirmed,
    }


def _subscription(doc: Doc) -> Subscription:
    return Subscription(
        id=str(doc["_id"]),
        source=doc["source"],
        subscriber=doc["subscriber"],
        ttl=int(doc["ttl"]),
        created=float(doc["created"]),
        expires=float(doc["expires"]),
        options=json.loads(doc["options"]),
        confirmed=bool(doc["confirmed"]),
    )


class MongoSubscriptions:
    def __init__(self, storage: Database) -> None:
        self._s = storage
        self.docs = storage.subscription_docs

    async def create_indexes(self) -> None:
        key = [("project", ASCENDING), ("source", ASCENDING)]
        await self.docs.create_index([*key, ("subscriber", ASCENDING)], unique=True)
        await self.docs.create_index([*key, ("_id", ASCENDING)])
        await self.docs.create_index("expires")

    async def _clear_expired(self, project: str, source: str, subscriber: str, now: float) -> None:
        """Make room for `subscriber`: an expired subscription still holds its unique key."""
        await self.docs.delete_many(
            {
                "project": project,
                "source": source,
                "subscriber": subscriber,
                "expires": {"$lte": now},
            }
        )

    @backend()
    async def create(
        self, project: str, source: str, subscriber: str, ttl: int, options: dict[str, Any]
    ) -> str | None:
        await self._s.fences.check_write(project, source)
        now = self._s.clock()
        await self._clear_expired(project, source, subscriber, now)
        sid = str(ObjectId())
        sub = Subscription(sid, source, subscriber, ttl, now, now + ttl, options)
        try:
            await self.docs.insert_one(_document(project, sub))
        except DuplicateKeyError:
            return None
        self._s.outbox.forget(project, source)  # this node's next post asks again
        return sid

    async def get(self, project: str, source: str, subscription_id: str) -> Subscription:
        found = await self._find(project, source, self._id(subscription_id))
        if not found:
            raise SubscriptionDoesNotExist(subscription_id)
        return found[0]

    async def find(self, project: str, source: str, subscriber: str) -> Subscription | None:
        found = await self._find(project, source, {"subscriber": subscriber})
        return found[0] if found else None

    async def list(
        self, project: str, source: str, *, marker: str | None, limit: int
    ) -> Subscriptions:
        if limit <= 0:  # MongoDB reads limit 0 as "no limit"
            return []
        if marker and not is_id(marker):
            # Ids above it as text, as the SQL drivers compare (ids are lowercase hex): a
            # source has few subscriptions, so they are all read.
            return [s for s in await self._find(project, source, {}) if s.id > marker][:limit]
        after = {"_id": {"$gt": ObjectId(marker)}} if marker else {}
        return await self._find(project, source, after, limit=limit)

    @staticmethod
    def _id(subscription_id: str) -> Doc:
        return {"_id": ObjectId(subscription_id) if is_id(subscription_id) else subscription_id}

    @staticmethod
    def _not(subscription_id: str) -> Doc:
        return {"_id": {"$ne": ObjectId(subscription_id) if is_id(subscription_id) else ""}}

    @backend()
    async def _find(
        self, project: str, source: str, condition: Doc, *, limit: int = 0, fenced: bool = True
    ) -> Subscriptions:
        if fenced:
            await self._s.fences.check_read(project, source)
        query = {**_live(project, source, self._s.clock()), **condition}
        cursor = self.docs.find(query).sort("_id", ASCENDING).limit(limit)
        return [_subscription(doc) async for doc in cursor]

    @backend()
    async def update(
        self,
        project: str,
        source: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        await self._s.fences.check_write(project, source)
        now = self._s.clock()
        changes: Doc = {}
        if subscriber is not None:
            changes["subscriber"] = subscriber
            await self._clear_expired(project, source, subscriber, now)
            # Asked first: FerretDB answers an update's duplicate key as an internal error.
            taken = {"project": project, "source": source, "subscriber": subscriber}
            if await self.docs.find_one({**taken, **self._not(subscription_id)}, {"_id": 1}):
                raise SubscriptionAlreadyExists()
        if ttl is not None:
            changes.update(ttl=ttl, expires=now + ttl)
        if options is not None:
            changes["options"] = json.dumps(options)
        query = {**_live(project, source, now), **self._id(subscription_id)}
        try:
            if changes:
                found = (await self.docs.update_one(query, {"$set": changes})).matched_count
            else:
                found = int(await self.docs.find_one(query, {"_id": 1}) is not None)
        except DuplicateKeyError:
            raise SubscriptionAlreadyExists() from None
        if not found:
            raise SubscriptionDoesNotExist(subscription_id)

    @backend()
    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool
    ) -> None:
        await self._s.fences.check_write(project, source)
        query = {**_live(project, source, self._s.clock()), **self._id(subscription_id)}
        done = await self.docs.update_one(query, {"$set": {"confirmed": confirmed}})
        if done.matched_count == 0:
            raise SubscriptionDoesNotExist(subscription_id)

    @backend()
    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        await self._s.fences.check_write(project, source)
        await self.docs.delete_one(
            {"project": project, "source": source, **self._id(subscription_id)}
        )
        # Not in the same write (no multi-document transactions): right after it, and a
        # deliverer checks that a delivery's subscription is live before sending it.
        await self._s.outbox.forget_owed(project, source, subscription_id)

    @backend()
    async def purge(self, project: str, source: str) -> int:
        await self._s.fences.check_write(project, source)
        gone = await self.delete_all(project, source)
        await self._s.outbox.forget_owed(project, source)
        return gone

    async def delete_all(self, project: str, source: str) -> int:
        """Delete every subscription of `source`, fenced or not (a queue's delete, checked)."""
        gone = await self.docs.delete_many({"project": project, "source": source})
        return gone.deleted_count

    async def live(self, project: str, source: str) -> Subscriptions:
        return await self._find(project, source, {}, fenced=False)

    @backend()
    async def subscribed(self, project: str, source: str) -> bool:
        found = await self.docs.find_one(_live(project, source, self._s.clock()), {"_id": 1})
        return found is not None

    async def export_subscriptions(self, project: str, source: str) -> Subscriptions:
        return await self.live(project, source)

    @backend()
    async def import_subscriptions(
        self, project: str, source: str, subscriptions: Sequence[Subscription]
    ) -> int:
        changed = 0
        self._s.outbox.forget(project, source)
        for sub in subscriptions:
            doc = await self.docs.find_one({"_id": ObjectId(sub.id)})
            if doc is not None:
                if (doc["project"], doc["source"]) != (project, source):
                    raise TransferConflict(f"subscription {sub.id} belongs to another queue")
                if _subscription(doc) == sub:
                    continue
            # The source's copy wins over another id holding the same subscriber here.
            await self.docs.delete_many(
                {
                    "project": project,
                    "source": source,
                    "subscriber": sub.subscriber,
                    "_id": {"$ne": ObjectId(sub.id)},
                }
            )
            await self.docs.replace_one(
                {"_id": ObjectId(sub.id)}, _document(project, sub), upsert=True
            )
            changed += 1
        return changed

    @backend()
    async def delete_subscriptions(self, project: str, source: str, ids: Sequence[str]) -> int:
        oids = [ObjectId(i) for i in ids if is_id(i)]
        if not oids:
            return 0
        gone = await self.docs.delete_many(
            {"project": project, "source": source, "_id": {"$in": oids}}
        )
        return gone.deleted_count
