"""Markers handed out, logged so that no marker is handed out twice (FerretDB 1.x).

FerretDB 1.x applies `$inc` as a read and then a write of the whole queue document, so two racing
reservations can both read counter 5 and write 6 and 7 in either order: the counter can go back
to 6 after markers 6 and 7 were handed out. The unique `(project, queue, marker)` index of the
messages then catches a marker handed out again only while the message that held it is stored;
once it is deleted (claimed and consumed at once), the marker goes to a second message, and a
client that paged past it never sees that one. A conditional update (compare-and-set of the
counter) would not help: FerretDB reads the documents that match, then writes each back by `_id`
alone, with no condition.

Inserts are atomic there, and a unique index is enforced by the backend. So on FerretDB each
reservation also inserts one document per marker, `_id` "<queue document id>:<marker>", before
any message uses them: a reservation any of whose markers is already logged is given up (its
markers are never used), the counter is raised past it, and another is made. The queue
document's `_id` names the queue's incarnation, so a queue deleted and created again counts
from 0 without meeting its predecessor's markers. A lost update puts the counter back by the
size of the reservations racing it, within milliseconds, so entries are kept `RETAIN` seconds
and then collected. On MongoDB, whose `$inc` is atomic, nothing is logged.
"""

from __future__ import annotations

from collections.abc import Callable

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from node.storage.mongodb.documents import Doc, duplicates

RETAIN = 3600.0  # seconds a marker handed out stays logged


class Reservations:
    def __init__(self, docs: AsyncCollection[Doc], clock: Callable[[], float]) -> None:
        self.docs = docs
        self._clock = clock
        self.enabled = False  # set by `Database.create_indexes`: on FerretDB

    async def create_indexes(self) -> None:
        await self.docs.create_index("at")

    async def record(self, incarnation: ObjectId, first: int, top: int) -> bool:
        """Log markers `first`..`top` of the queue whose document is `incarnation` as handed
        out; False if any of them already was (then none of them may be used)."""
        if not self.enabled or top < first:
            return True
        now = self._clock()
        handed = [{"_id": f"{incarnation}:{m}", "at": now} for m in range(first, top + 1)]
        try:
            await self.docs.insert_many(handed, ordered=False)
        except BulkWriteError as exc:
            duplicates(exc)  # re-raises anything else
            return False
        return True

    async def collect(self) -> None:
        await self.docs.delete_many({"at": {"$lte": self._clock() - RETAIN}})
