"""The storage seam: one protocol per controller, implemented once per backend.

Every method is scoped by `(project, queue)`; `project` is "" for v1 requests without a project.
Expired messages and claims are invisible to every method at once (queries filter on expiry);
`Storage.collect_garbage` removes them later. Drivers raise only `node.errors` types: backend
failures become `StorageUnavailable` at the driver's edge.

Fences (see `TransferStore`): every write of the three controllers raises `QueueFrozen` while its
queue is fenced on this partition, before it changes anything; with the reason `Fence.MOVED` every
read of the queue raises it too. Listing a project's queues is not a read of one queue: a moved
queue stays listed on its source until `TransferStore.drop` removes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from node.models import (
    Changes,
    Claim,
    DeadLetter,
    Message,
    MessageRow,
    NewMessage,
    Outgoing,
    QueueDigest,
    QueueExport,
    QueueInfo,
    QueueStats,
    Subscription,
)
from node.storage.outbox import OutboxStore

# Aliases: the controllers have a method named `list`, which shadows the builtin inside them.
Messages = list[Message]
Queues = list[QueueInfo]
Ids = list[str]
Claims = list[Claim]
Fingerprints = list[tuple[int, int]]  # (marker, fingerprint)
Subscriptions = list[Subscription]


class QueueStore(Protocol):
    async def create(self, project: str, queue: str, metadata: dict[str, Any] | None) -> bool:
        """Create the queue; True if it was created, False if it already existed.

        When it already existed and `metadata` is not None, the metadata is replaced (Zaqar's PUT).
        """

    async def exists(self, project: str, queue: str) -> bool: ...

    async def get_metadata(self, project: str, queue: str) -> dict[str, Any]:
        """Raises `QueueDoesNotExist`. Inside a request's reading (`node.storage.reading`) it
        may answer from a copy the driver keeps, which the request's next statement on the queue
        then confirms, raising `MetadataChanged` (having done nothing) if the copy was stale."""

    async def set_metadata(self, project: str, queue: str, metadata: dict[str, Any]) -> None:
        """Replace the metadata. Raises `QueueDoesNotExist`."""

    async def delete(self, project: str, queue: str) -> None:
        """Delete the queue with its messages, claims and subscriptions; a missing queue is
        not an error."""

    async def list(
        self, project: str, *, marker: str | None, limit: int, detailed: bool, topics: bool = False
    ) -> Queues:
        """Queues of `project` sorted by name, strictly after `marker`; never a topic's container.

        With `topics`, the containers of the project's topics instead (`wire.topics`), sorted,
        after the container of the topic `marker`, listed under their container names.
        """

    async def stats(self, project: str, queue: str) -> QueueStats:
        """Counts of live messages. Raises `QueueDoesNotExist`."""

    async def purge(self, project: str, queue: str) -> None:
        """Delete every message and claim of the queue, keeping the queue and its counter."""


class MessageStore(Protocol):
    async def post(
        self, project: str, queue: str, messages: Sequence[NewMessage], client_id: str
    ) -> Ids:
        """Append messages in order, atomically; return their new ids.

        Each message gets the next value of the queue's marker counter. Raises `QueueDoesNotExist`
        (callers that create queues lazily create it first).
        """

    async def list(
        self,
        project: str,
        queue: str,
        *,
        marker: int | None,
        limit: int,
        echo: bool,
        include_claimed: bool,
        include_delayed: bool,
        client_id: str,
    ) -> Messages:
        """Live messages with a marker above `marker`, in marker order.

        Messages posted by `client_id` are left out unless `echo`; claimed ones unless
        `include_claimed`; delayed ones unless `include_delayed`. A missing queue lists nothing.
        """

    async def get(self, project: str, queue: str, message_id: str) -> Message:
        """Raises `MessageDoesNotExist` (also for an expired or malformed id)."""

    async def bulk_get(self, project: str, queue: str, ids: Sequence[str]) -> Messages:
        """The live messages among `ids`; unknown ids are skipped."""

    async def delete(self, project: str, queue: str, message_id: str, claim_id: str | None) -> None:
        """Delete one message. A missing message is not an error.

        Raises `MessageIsClaimed` when it is under a live claim and `claim_id` is None or names
        another claim, `MessageNotClaimed` when `claim_id` is given but the message is not claimed,
        `InvalidClaim` when `claim_id` is malformed.
        """

    async def bulk_delete(
        self, project: str, queue: str, ids: Sequence[str], claim_ids: Sequence[str] | None
    ) -> None:
        """Delete the messages among `ids`; with `claim_ids`, only those held by those claims."""

    async def pop(self, project: str, queue: str, limit: int) -> Messages:
        """Atomically remove and return up to `limit` free messages, oldest first."""


class ClaimStore(Protocol):
    async def create(
        self, project: str, queue: str, *, ttl: int, grace: int, limit: int
    ) -> tuple[Claim, Messages]:
        """Claim up to `limit` free messages, oldest first.

        A message is held by at most one live claim. Each claimed message lives at least until
        the claim expires plus `grace`. Returns the claim and its messages (possibly none: the
        claim is then not stored).
        """

    async def dead_letter(self, project: str, queue: str, policy: DeadLetter, *, limit: int) -> int:
        """Move to `policy.queue` the free messages, among the next `limit` a claim would take,
        that `policy.max_claims` claims have taken already (every claim `create` makes counts
        one more for each message it takes); return how many moved. Called before the claim,
        which then takes the messages that are left.

        A move is atomic and happens once: the message keeps its id, body, client id and claim
        count, takes the dead-letter queue's next marker, loses any claim and delay, and with
        `policy.ttl` lives that long from now. While the dead-letter queue does not exist here
        or is fenced (it lives on another partition, or nowhere yet), the messages go, in the
        same one write, to this partition's outgoing pile for it instead
        (`node.storage.deadletters`), each under a new hold, for `DeadLetterStore` to move
        later; they count as moved. Raises `QueueFrozen` as a write of `queue` does."""

    async def get(self, project: str, queue: str, claim_id: str) -> tuple[Claim, Messages]:
        """Raises `ClaimDoesNotExist` (also when expired or malformed)."""

    async def update(
        self, project: str, queue: str, claim_id: str, *, ttl: int, grace: int
    ) -> None:
        """Renew the claim for `ttl` seconds from now. Raises `ClaimDoesNotExist`."""

    async def delete(self, project: str, queue: str, claim_id: str) -> None:
        """Release the claim's messages; a missing claim is not an error."""


class SubscriptionStore(Protocol):
    """Subscriptions (Zaqar v2), stored in the partition with the queue they belong to.

    `source` is the name of what is subscribed to: a queue (or a topic, which shares the
    store). A subscription is unique by (project, source, subscriber) among live ones; ids are
    24-hex ObjectIds made by the store, so `list` (in id order) is in creation order. Expired
    subscriptions (`expires` passed, by the storage's clock) are invisible at once to every
    method and collected later by `Storage.collect_garbage`. The source need not exist: the API
    creates a queue before subscribing to it.

    Fences: `create`, `update`, `confirm`, `delete` and `purge` raise `QueueFrozen` while the
    source is fenced, before changing anything; with `Fence.MOVED`, `get`, `find` and `list`
    raise it too. `live` and `subscribed` (the notification deliverer's reads) and the
    `*_subscriptions` methods (the migration's) are never refused by a fence.
    """

    async def create(
        self, project: str, source: str, subscriber: str, ttl: int, options: dict[str, Any]
    ) -> str | None:
        """Store a new, unconfirmed subscription expiring `ttl` seconds from now; return its id,
        or None when a live one with this subscriber exists already (an expired one is
        replaced)."""

    async def get(self, project: str, source: str, subscription_id: str) -> Subscription:
        """Raises `SubscriptionDoesNotExist` (also when expired, malformed or another
        source's)."""

    async def find(self, project: str, source: str, subscriber: str) -> Subscription | None:
        """The live subscription of `source` with this subscriber, if any."""

    async def list(
        self, project: str, source: str, *, marker: str | None, limit: int
    ) -> Subscriptions:
        """Up to `limit` live subscriptions of `source` with an id above `marker`, in id order."""

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
        """Change the fields given (not None); a new `ttl` runs from now, `options` replaces
        the old ones whole. Raises `SubscriptionDoesNotExist`, and `SubscriptionAlreadyExists`
        when another live subscription of `source` has the new subscriber."""

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool
    ) -> None:
        """Set the subscription's `confirmed` flag. Raises `SubscriptionDoesNotExist`."""

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        """Delete one subscription; a missing one is not an error."""

    async def purge(self, project: str, source: str) -> int:
        """Delete every subscription of `source`; return how many went."""

    async def live(self, project: str, source: str) -> Subscriptions:
        """Every live subscription of `source`, confirmed or not, in id order: one indexed read
        (what a post's notifications go to)."""

    async def subscribed(self, project: str, source: str) -> bool:
        """Whether `source` has any live subscription: one indexed lookup, cheap enough to ask
        on every post."""

    async def export_subscriptions(self, project: str, source: str) -> Subscriptions:
        """Every live subscription of `source` as stored (ids, expiry, options, confirmed), in
        id order: what a migration copies."""

    async def import_subscriptions(
        self, project: str, source: str, subscriptions: Sequence[Subscription]
    ) -> int:
        """Upsert `subscriptions` by id, preserving every field; return how many were inserted
        or changed (importing the same ones again returns 0). A live subscription of `source`
        under another id with the same subscriber is replaced (the source's copy wins). Raises
        `TransferConflict` when an id belongs to another project or source."""

    async def delete_subscriptions(self, project: str, source: str, ids: Sequence[str]) -> int:
        """Delete the subscriptions of `source` among `ids`; return how many went."""


class DeadLetterStore(Protocol):
    """Dead letters bound for a queue on another partition (`node.storage.deadletters`): the
    outgoing pile on the source partition, and how the dead-letter queue's partition takes them.

    The mover calls `receive` and `release` on the dead-letter queue's partition, `waiting`,
    `sent` and `discard` on the pile's. Every method is idempotent. The pile is no queue:
    fences do not apply to it, and only expiry (`Storage.collect_garbage`) removes from it
    what the mover did not.
    """

    async def waiting(self, *, limit: int) -> list[Outgoing]:
        """Up to `limit` live messages of this partition's outgoing piles, every project's, each
        pile's in marker order."""

    async def receive(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        """Insert the messages into `queue` with its next markers, each held by its `claim_id`
        (claimed until `release`, for as long as it lives), its id, body, client id, claim count,
        ttl, created and expiry kept; a message this queue holds already is left as it is, and
        one in this partition's pile for `queue` is moved into it (the pile and the queue are on
        one partition now). Return how many landed: receiving the same messages again returns 0.
        All land in one write, or none. Raises `QueueDoesNotExist` and, as a write of `queue`
        does, `QueueFrozen`."""

    async def release(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        """Lift the holds of the messages of `queue` still held by the `claim_id` each carries;
        return how many. Raises `QueueFrozen` as a write of `queue` does."""

    async def sent(self, project: str, queue: str, ids: Sequence[str]) -> int:
        """Mark the pile's messages bound for `queue` among `ids` as known whole there."""

    async def discard(self, project: str, queue: str, ids: Sequence[str]) -> int:
        """Delete the pile's messages bound for `queue` among `ids`; return how many went."""


class TransferStore(Protocol):
    """What a migration needs from a partition to move one queue with nothing lost or duplicated.

    The migration worker fences the queue on the source, copies it (`export_*` on the source,
    `import_*` on the target, `delete_messages` for what the source deleted meanwhile, following
    `changes`), compares `fingerprints`, switches the placement, and purges the source with
    `drop`. None of these methods is refused by a fence: they are how the worker moves a fenced
    queue. All of them are idempotent, so a worker that died mid-step resumes by doing the step
    again.

    Atomicity of the fence, per driver:

    - SQLite: each write checks the fence in the transaction that applies it, so once `freeze`
      returns no write can land; a write either committed before the freeze or is refused.
    - MongoDB and FerretDB (no multi-document transactions): a post checks the fence in the very
      update that reserves its markers (one document, atomic on MongoDB); a post that reserved
      before the freeze may insert its messages after `freeze` returned, but its markers are at or
      below the counter that `export_queue` reports after the freeze: while the queue's highest
      marker is below that counter, posts may still be landing (or died half-way, or were
      refused racing the freeze, or their messages were deleted: gaps that never fill).
      Every other write checks the fence and then acts, so one that passed its check before the
      freeze can still land after it (a claim, a release, a delete, a metadata change), within the
      time one request takes; so can a creation racing the tombstone of a missing queue (the new
      queue is then fenced and empty). The worker therefore waits a settle interval (a request's
      time) after `freeze` before its final catch-up, and compares fingerprints after it. FerretDB
      1.x applies even one-document updates as a read and a write, so there a post racing the
      freeze can land past the counter read right after it: the settle interval covers that too.
      A write that starts after `freeze` returned is refused on both. See
      `node.storage.mongodb.fences`.

    Change tracking, so that a catch-up and a verify need not read the whole queue again. While
    a queue is tracked (`track`), every write of one of its messages (a post, a claim made,
    renewed or released, an import) stamps the message with the next value of the queue's
    change sequence, and every delete of one (by a client, a pop, a catch-up) leaves a tombstone
    so stamped, kept `transfer.TOMBSTONE_RETENTION` seconds. `changes(since=p)` then reports what
    was written and deleted after `sequence` returned p. Claims are tracked alike: a claim made or
    renewed (by a client, or an import) is stamped with the write, and a claim released (by a
    client, or `delete_claims`) leaves a tombstone so stamped, so a catch-up reads only the claims
    that changed, however many are live. Expiry is no change, for messages and claims alike: it
    happens on both partitions at the same absolute time, by the clock. Atomicity, per driver:

    - SQLite: the stamp is taken in the transaction of the write, so `changes` misses nothing.
    - MongoDB: a write takes its stamp, then lands, like a post's markers; one still landing
      may carry a stamp at or below a position read meanwhile, within one request's time (the
      worker reads changes after a position at least a settle interval old). On FerretDB 1.x the
      sequence's increments are not atomic, so a stamp may be handed out twice or the sequence
      step back; `sequence` reports a position lowered by a margin that covers the writes racing
      at once.
    """

    async def freeze(
        self, project: str, queue: str, reason: str, *, lasts: float | None = None
    ) -> None:
        """Fence the queue on this partition: writes raise `QueueFrozen(reason)` from now on.

        With `lasts`, the fence lifts itself that many seconds from now (by the partition's own
        clock, so no other machine's clock matters): from then on the queue behaves as unfenced
        (writes land, `fence` says None), and `QueueFrozen.lifts` tells a refused write how many
        seconds remain. A migration worker's freeze lasts a while, so that a freeze whose worker
        vanished ends on its own.

        With `Fence.MOVED` reads raise it too (the queue lives on another partition: a stale
        route). A queue that does not exist gets a tombstone: it cannot be created here, lazily or
        not, and reads see no queue (or raise, when moved). Freezing again replaces the reason.
        `reason` is a short lowercase token (it travels as an HTTP header); raises `ValueError`
        otherwise.
        """

    async def extend(self, project: str, queue: str, lasts: float) -> bool:
        """Make the queue's fence lift `lasts` seconds from now, if it is still in force (it has
        a deadline, not yet passed); False when it lapsed or has none. Atomic on both drivers:
        True proves the fence has held without a gap since it was set."""

    async def unfreeze(self, project: str, queue: str) -> None:
        """Lift the fence (and a tombstone with it); an unfenced queue is not an error."""

    async def fence(self, project: str, queue: str) -> str | None:
        """The queue's fence reason on this partition, None when it has none."""

    async def export_queue(self, project: str, queue: str) -> QueueExport | None:
        """The queue's record with its fence; None when the queue does not exist (a tombstone)."""

    async def export_messages(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> Messages:
        """Up to `limit` live messages with a marker above `after_marker`, in marker order.

        Claimed and delayed messages and every client's are included, with their claim fields;
        a claim that has expired is reported as none (`claim_id` None, `claim_expires` 0).
        """

    async def export_rows(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> list[MessageRow]:
        """`export_messages`, with each body as its stored JSON text: for bulk copies."""

    async def export_claims(
        self, project: str, queue: str, *, ids: Sequence[str] | None = None
    ) -> Claims:
        """The queue's live claims, oldest first; with `ids`, only those among them (unknown,
        expired or another queue's ids are skipped)."""

    async def import_queue(self, project: str, queue: str, export: QueueExport) -> None:
        """Create the queue, or update it: metadata and `created` as exported, and the marker
        counter raised to `export.counter` (never lowered), so the next post continues the
        source's sequence. The queue's own fence on this partition is kept (a tombstone becomes a
        fenced queue); `export.fence` is not copied."""

    async def import_messages(self, project: str, queue: str, messages: Sequence[Message]) -> int:
        """Upsert `messages` by id, preserving every field (id, marker, body, ttl, created,
        absolute expiry, delay, client id, claim id and expiry); return how many were inserted
        or changed, so importing the same messages again returns 0. The queue's counter is raised
        to the highest imported marker. Raises `QueueDoesNotExist` (import the queue first) and
        `TransferConflict` when a message's id belongs to another queue or its marker to another
        message of this queue."""

    async def import_rows(self, project: str, queue: str, rows: Sequence[MessageRow]) -> int:
        """`import_messages`, from rows as `export_rows` gives them (bodies not decoded)."""

    async def import_claims(self, project: str, queue: str, claims: Sequence[Claim]) -> int:
        """Upsert `claims` by id, as exported; return how many were inserted or changed.
        Raises `TransferConflict` when a claim's id belongs to another queue."""

    async def delete_messages(self, project: str, queue: str, ids: Sequence[str]) -> int:
        """Delete the messages among `ids`, claimed or not; return how many went. For the
        catch-up: what the source deleted since it was copied."""

    async def delete_claims(self, project: str, queue: str, ids: Sequence[str]) -> int:
        """Delete the claims among `ids` (their messages are left as they are); return how many
        went. For the catch-up: the claims the source released since they were copied."""

    async def digest(self, project: str, queue: str) -> QueueDigest:
        """A fingerprint of the queue's live messages and claims, equal on two partitions exactly
        when they hold the same messages (id, marker, body, expiry, claim) and claims. Read in
        batches: it is a snapshot only of a queue that does not change (a frozen one)."""

    async def fingerprints(
        self, project: str, queue: str, *, after_marker: int, limit: int
    ) -> Fingerprints:
        """`(marker, fingerprint)` of up to `limit` live messages with a marker above
        `after_marker`, in marker order (`transfer.fingerprint`: equal on two partitions exactly
        when the message is, so a range of markers is compared without reading its bodies out).
        """

    async def track(self, project: str, queue: str, enabled: bool) -> None:
        """Start (or stop) tracking the queue's changes: once it returns, every write that
        starts is tracked (MongoDB: it waits until no node believes the queue untracked any
        more). Raises `QueueDoesNotExist`. Tracking outlives a fence; the queue's record going
        (`drop`, a delete) ends it."""

    async def sequence(self, project: str, queue: str) -> int:
        """The queue's change sequence: a position to ask `changes` after; 0 for a missing
        queue. Ask it after `track` (on MongoDB, a settle interval after) for it to count."""

    async def changes(self, project: str, queue: str, *, since: int, limit: int) -> Changes:
        """What changed after position `since`, in the order of the stamps: the messages written
        (as they are now, expired or not, their claims as `export_messages` reports them), the
        messages deleted, the claims made or renewed (as they are now, expired or not) and the
        claims deleted, about `limit` of each (one write's stamp is never split between pages).
        Raises `ChangesLost` when that can no longer be told: the queue is not tracked,
        tombstones after `since` were collected, or the queue was purged or created again since.
        """

    async def drop(self, project: str, queue: str, *, limit: int) -> int:
        """Delete up to `limit` of the queue's messages and claims, expired or not; once none are
        left, the queue's record with its subscriptions. Return how many records went: 0 when
        nothing is left. The fence stays, so a dropped source keeps answering `QueueFrozen` (a
        tombstone); unfenced, nothing is left of the queue."""


class Storage(Protocol):
    """One partition's storage: the controllers, the migration's primitives, lifecycle."""

    @property
    def queues(self) -> QueueStore: ...

    @property
    def messages(self) -> MessageStore: ...

    @property
    def claims(self) -> ClaimStore: ...

    @property
    def subscriptions(self) -> SubscriptionStore: ...

    @property
    def transfer(self) -> TransferStore: ...

    @property
    def dead_letters(self) -> DeadLetterStore: ...

    @property
    def outbox(self) -> OutboxStore: ...

    async def ping(self) -> bool:
        """True if the backend answers."""

    async def collect_garbage(self) -> int:
        """Remove expired messages, claims and subscriptions; return how many records
        went."""

    async def close(self) -> None: ...
