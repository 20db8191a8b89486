"""Zaqar's rules that every driver applies, written once above the drivers."""

from __future__ import annotations

from node.errors import MessageIsClaimed, MessageNotClaimed


def check_delete(held_by: str | None, claim_id: str | None) -> None:
    """May a message held by the claim `held_by` (None: free) be deleted with `claim_id`?

    Without a claim id only a free message may go; with one, only a message that claim holds.
    Raises `MessageIsClaimed` (another claim holds it, or any claim does and none was given) and
    `MessageNotClaimed` (a claim id was given for a free message).
    """
    if claim_id is None:
        if held_by is not None:
            raise MessageIsClaimed()
    elif held_by is None:
        raise MessageNotClaimed()
    elif held_by != claim_id:
        raise MessageIsClaimed()
