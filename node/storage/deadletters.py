"""Dead letters bound for a queue on another partition: the outgoing pile and its marks.

A claim of a queue with `_max_claim_count` and `_dead_letter_queue` first takes the messages
claimed that many times out of the queue (`ClaimStore.dead_letter`), in one write of the queue's
partition. When the dead-letter queue is there and open, they land in it at once. Otherwise they
land in the partition's *outgoing pile* for that dead-letter queue: a container named
`pile(queue)`, which no queue or topic name can be and no listing shows, so no client lists,
claims or counts them any more. Each lands with a *hold*: a fresh claim id in its `claim_id`,
and `claim_expires` `WAITING` (0).

The migration worker's mover (`migrate.deadletters`) then moves each, through the catalog, in
four steps, each idempotent and resumed from these marks after a crash:

1. `receive` on the dead-letter queue's partition: inserted once by id, with the queue's next
   markers, held by its hold (claimed until released, so no consumer takes it yet);
2. `sent` in the pile: its `claim_expires` becomes `SENT` (the copy is known whole);
3. `release` on the dead-letter queue's partition: the hold lifts, consumers may take it;
4. `discard` from the pile.

A copy received but not yet marked sent is still held, so a second `receive` (a retry, the
dead-letter queue having moved meanwhile with the held copy) finds it and inserts nothing.
Once it is marked sent, nothing inserts it again: a consumer may delete the released copy
without it coming back.
"""

from __future__ import annotations

MARK = "\x7f"  # after every character a queue or topic name may hold (`wire.topics.END`)
WAITING = 0.0  # a pile message's `claim_expires`: not yet known whole in the dead-letter queue
SENT = 1.0  # ... known whole there: release its hold, then discard it


def pile(queue: str) -> str:
    """The container of the dead letters bound for `queue` on another partition."""
    return MARK + queue


def is_pile(name: str) -> bool:
    return name.startswith(MARK)


def bound_for(name: str) -> str:
    """The dead-letter queue a pile's messages go to."""
    return name[len(MARK) :]
