"""A request's reading of a queue's metadata, confirmed by the statement that acts on it.

An API request reads a queue's metadata, decides with it (what a listing shows, whether bodies
are encrypted, where dead letters go), then acts. Inside `reading()`, a driver may answer
`QueueStore.get_metadata` from a copy it keeps in the process, provided the statement that acts
for the request checks that what the request saw (`Reading.seen`) is still what is stored, and
raises `MetadataChanged`, having changed nothing, when it is not. The request then reads the
metadata again and acts again (`node.api.endpoint.Endpoint.shaped`). So a request never acts on
metadata older than itself, and most requests spend no round trip reading it. Outside a reading
(the deliverer, migrations, tests of the storage) drivers read the store itself.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

Key = tuple[str, str]  # (project, queue)


@dataclass
class Reading:
    """What one request saw: each queue's metadata as the driver stores it (None: no queue)."""

    seen: dict[Key, str | None] = field(default_factory=dict)


_CURRENT: ContextVar[Reading | None] = ContextVar("metadata_reading", default=None)


class reading:  # read as a function: `with reading():`
    """The scope of one request's reading: set for its task, gone when the block ends (a class,
    not a generator: every request of the hot paths enters one)."""

    __slots__ = ("_token",)
    _token: Token[Reading | None]

    def __enter__(self) -> Reading:
        found = Reading()
        self._token = _CURRENT.set(found)
        return found

    def __exit__(self, *_: object) -> None:
        _CURRENT.reset(self._token)


def current() -> Reading | None:
    return _CURRENT.get()
