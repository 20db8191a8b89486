"""The MongoDB driver: one database per partition, over pymongo's native asyncio client, a module
per controller.

It runs on MongoDB and on FerretDB 1.x, so correctness rests on no transactions, no TTL indexes
and no atomic read-modify-write: FerretDB 1.x applies `$inc`, or an `update_many` whose filter says
"still free", as a read followed by a blind write. Expiry is checked in every query against the
injected clock; `collect_garbage` deletes what has expired. The one primitive trusted on every
server is the unique index (an insert that collides fails): it arbitrates who holds a message
(`holds`) and which message has a marker (`messages`).

Fences (a queue frozen for a migration, or moved away) live in `fences`, with a copy on the
queue's document that `post` checks in its reservation; see `fences` for what is atomic and what
is not. Writes of a queue whose changes are tracked take a stamp just before the update that
carries it (`changes`).

Bodies and metadata are stored as JSON text: they round-trip exactly as in the SQLite driver,
whatever their keys (`$x`, `a.b`) or numbers (beyond 64 bits).

`database` holds the client and the collections the controllers share; `documents` the shapes
and filters; `fences`, `holds` and `changes` the shared parts; `queues`, `messages`, `claims`
and `transfer` the controllers; `storage` puts them together.
"""

from node.storage.mongodb.storage import MongoStorage

__all__ = ["MongoStorage"]
