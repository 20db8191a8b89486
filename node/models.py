"""Records the storage layer returns and the API formats. Times are UNIX seconds (floats)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from bson import ObjectId


def new_id() -> str:
    """A 24-hex ObjectId string: unique across partitions, so a migrated id never collides."""
    return str(ObjectId())


def is_id(value: str) -> bool:
    return ObjectId.is_valid(value) and len(value) == 24


@dataclass(frozen=True, slots=True)
class NewMessage:
    body: Any
    ttl: int
    delay: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    marker: int
    body: Any
    ttl: int
    created: float
    expires: float
    client_id: str
    delay_expires: float = 0.0
    claim_id: str | None = None
    claim_expires: float = 0.0
    claim_count: int = 0  # how many claims have taken it (a queue's `_max_claim_count`)

    def age(self, now: float) -> int:
        return max(0, int(now - self.created))

    def is_claimed(self, now: float) -> bool:
        return self.claim_id is not None and self.claim_expires > now


class MessageRow(NamedTuple):
    """A message as stored, its body still the JSON text: what a bulk copy moves between
    partitions, a hundred thousand at a time, without decoding and encoding every body (a tuple:
    made and read at the speed of the database's own rows)."""

    id: str
    marker: int
    body: str  # JSON text, as every driver stores it (`json.dumps`)
    ttl: int
    created: float
    expires: float
    client_id: str
    delay_expires: float
    claim_id: str | None
    claim_expires: float
    claim_count: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Where a queue's messages go once claimed `max_claims` times (Zaqar's `_max_claim_count`,
    `_dead_letter_queue` and `_dead_letter_queue_messages_ttl`)."""

    queue: str
    max_claims: int
    ttl: int | None = None  # their ttl there, from the move; None keeps ttl and expiry


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A dead letter waiting on its partition to move to a dead-letter queue that is not there
    (`node.storage.deadletters`): `message.claim_id` is the hold its copy is received under."""

    project: str
    queue: str  # the dead-letter queue it is bound for
    message: Message
    sent: bool  # its copy is known whole in the dead-letter queue; the hold may be released


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    ttl: int
    grace: int
    created: float
    expires: float

    def age(self, now: float) -> int:
        return max(0, int(now - self.created))


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription to a queue's messages (Zaqar v2). `source` is the queue's name (or, later,
    a topic's): subscriptions are unique by project, source and subscriber."""

    id: str
    source: str
    subscriber: str  # the URI notifications go to: http(s)://..., mailto:...
    ttl: int
    created: float
    expires: float  # absolute, by the partition's clock: `created`/last ttl change + `ttl`
    options: dict[str, Any]
    confirmed: bool = False

    def age(self, now: float) -> int:
        return max(0, int(now - self.created))


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: str
    created: float


@dataclass(frozen=True, slots=True)
class QueueStats:
    free: int
    claimed: int
    delayed: int = 0
    oldest: MessageSummary | None = None
    newest: MessageSummary | None = None

    @property
    def total(self) -> int:
        return self.free + self.claimed + self.delayed


class Fence(StrEnum):
    """Why a queue refuses requests on this partition (the `X-Marconi-Fence` header's value)."""

    FROZEN = "frozen"  # a migration is switching it: writes wait, reads go on
    MOVED = "moved"  # it lives on another partition now: reads and writes are a stale route


@dataclass(frozen=True, slots=True)
class QueueExport:
    """A queue's record as a migration copies it: everything but its messages and claims."""

    metadata: dict[str, Any]
    counter: int  # the last marker handed out; the target's next marker continues from it
    created: float
    fence: str | None = None  # the source's fence, for the worker's checks; never imported


@dataclass(frozen=True, slots=True)
class QueueDigest:
    """What a verify step compares between source and target (live messages and claims only)."""

    count: int
    max_marker: int
    # The sum, modulo 2**64, of every live message's fingerprint (its id, marker, body, expiry
    # and live claim; `node.storage.transfer.fingerprint`), in hex: it does not depend on the
    # order it was added up in, so the digests of marker ranges add up to the queue's.
    checksum: str
    claim_ids: tuple[str, ...]  # live claims, sorted


@dataclass(frozen=True, slots=True)
class Removed:
    """A message deleted from a queue whose changes are tracked (a tombstone)."""

    id: str
    marker: int


@dataclass(frozen=True, slots=True)
class Changes:
    """One page of a queue's changes after a position (`TransferStore.changes`)."""

    messages: tuple[Message, ...]  # written after the position, as they are now
    removed: tuple[Removed, ...]  # deleted after the position
    upto: int  # the position the next page (or the next catch-up) continues from
    more: bool  # another page follows at once
    claims: tuple[Claim, ...] = ()  # claims made or renewed after the position, as they are now
    released: tuple[str, ...] = ()  # ids of the claims deleted after the position
