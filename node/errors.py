"""The node's closed error hierarchy.

Storage drivers translate backend exceptions (sqlite3, pymongo) into these at their edge; bad input
raises the wire contract's `ApiError` family (`wire.errors`). `node.api.errors` maps every type to
an HTTP status and Zaqar's `{"title", "description"}` body in one table.
"""

from wire.topics import described


class NodeError(Exception):
    """Root of every error the node raises on purpose."""


class StorageError(NodeError):
    """A storage operation could not be done as asked."""


class DoesNotExist(StorageError):
    pass


class QueueDoesNotExist(DoesNotExist):
    def __init__(self, project: str, queue: str) -> None:
        super().__init__(
            f"{described(queue, capital=True)} does not exist for project {project or '(none)'}"
        )


class MessageDoesNotExist(DoesNotExist):
    def __init__(self, project: str, queue: str, message_id: str) -> None:
        super().__init__(
            f"Message {message_id} does not exist in {described(queue)} "
            f"for project {project or '(none)'}"
        )


class ClaimDoesNotExist(DoesNotExist):
    def __init__(self, project: str, queue: str, claim_id: str) -> None:
        super().__init__(
            f"Claim {claim_id} does not exist in queue {queue} for project {project or '(none)'}"
        )


class SubscriptionDoesNotExist(DoesNotExist):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"Subscription {subscription_id} does not exist")


class SubscriptionAlreadyExists(StorageError):
    """Another live subscription of the same source has that subscriber."""

    def __init__(self) -> None:
        super().__init__(
            "Such subscription already exists. Subscriptions are unique by project + queue "
            "+ subscriber URI."
        )


class InvalidClaim(StorageError):
    """A delete named a claim that does not exist or has expired."""

    def __init__(self) -> None:
        super().__init__("The specified claim does not exist or has expired.")


class MessageNotClaimed(StorageError):
    """A delete named a claim, but the message is not claimed."""

    def __init__(self) -> None:
        super().__init__("A claim was specified, but the message is not currently claimed.")


class MessageIsClaimed(StorageError):
    """A delete without a claim id hit a message under a live claim (or another claim's)."""

    def __init__(self) -> None:
        super().__init__("This message is claimed; it cannot be deleted without a valid claim ID.")


class QueueFrozen(StorageError):
    """The queue is frozen for a migration, or has moved away: writes are refused here."""

    def __init__(
        self, project: str, queue: str, reason: str = "frozen", *, lifts: float | None = None
    ) -> None:
        self.reason = reason
        self.lifts = lifts  # seconds until the fence lifts itself; None: until it is lifted
        super().__init__(
            f"{described(queue, capital=True)} of project {project or '(none)'} is {reason}"
        )


class TransferConflict(StorageError):
    """An import met different data under the same id or marker: the target is not a copy of
    the source, and overwriting would lose one of them."""


class ChangesLost(StorageError):
    """The changes asked for can no longer be told (their tombstones were collected, the queue
    was purged or created again since): the caller compares the whole queue instead."""


class StorageUnavailable(StorageError):
    """The backend failed (connection lost, disk error, timeout); the caller may retry."""


class MetadataChanged(StorageUnavailable):
    """The queue's metadata changed after the request read it (`node.storage.reading`): nothing
    was done; the request reads it again and acts again. Answered 503 if it keeps changing."""
