"""Document shapes, filters and error translation that the MongoDB driver's modules share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.errors import BulkWriteError, PyMongoError

from node.errors import StorageUnavailable
from node.models import Claim, Message, is_id

Doc = dict[str, Any]
Messages = list[Message]
DUPLICATE_KEY = 11000


@asynccontextmanager
async def backend() -> AsyncIterator[None]:
    """Translate pymongo's errors into `StorageUnavailable`; the only place they are caught."""
    try:
        yield
    except PyMongoError as exc:
        raise StorageUnavailable(f"mongodb: {exc}") from exc


def queue_key(project: str, queue: str) -> Doc:
    return {"project": project, "name": queue}


def live_query(project: str, queue: str, now: float) -> Doc:
    return {"project": project, "queue": queue, "expires": {"$gt": now}}


def free_query(now: float) -> Doc:
    # A released or never-claimed message has claim_expires 0, so one comparison covers both.
    return {"delay_expires": {"$lte": now}, "claim_expires": {"$lte": now}}


def object_ids(ids: Sequence[str]) -> list[ObjectId]:
    return [ObjectId(i) for i in ids if is_id(i)]


def duplicates(exc: BulkWriteError) -> set[int]:
    """Positions of the documents refused as duplicates; re-raises any other failure."""
    errors = exc.details.get("writeErrors", [])
    if exc.details.get("writeConcernErrors") or any(e["code"] != DUPLICATE_KEY for e in errors):
        raise exc
    return {e["index"] for e in errors}


def to_message(doc: Doc) -> Message:
    claim_id = doc.get("claim_id")
    return Message(
        id=str(doc["_id"]),
        marker=doc["marker"],
        body=json.loads(doc["body"]),
        ttl=doc["ttl"],
        created=doc["created"],
        expires=doc["expires"],
        client_id=doc["client_id"],
        delay_expires=doc["delay_expires"],
        claim_id=None if claim_id is None else str(claim_id),
        claim_expires=doc["claim_expires"],
        claim_count=doc.get("claim_count", 0),
    )


def to_claim(doc: Doc) -> Claim:
    return Claim(str(doc["_id"]), doc["ttl"], doc["grace"], doc["created"], doc["expires"])


async def to_messages(cursor: AsyncCursor[Doc]) -> Messages:
    return [to_message(doc) async for doc in cursor]
