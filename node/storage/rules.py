"""Zaqar's rules above the drivers, written once: every driver asks them, none restates them."""

from __future__ import annotations

from node.errors import MessageIsClaimed, MessageNotClaimed


def check_delete(held_by: str | None, claim_id: str | None) -> None:
    """May a delete naming `claim_id` (None: no claim named) remove a message held by the live
    claim `held_by` (None: not claimed)? Raises `MessageIsClaimed` when the message is held and
    the delete names no claim or another one, `MessageNotClaimed` when it names a claim but the
    message is free."""
    if claim_id is None:
        if held_by is not None:
            raise MessageIsClaimed()
        return
    if held_by is None:
        raise MessageNotClaimed()
    if held_by != claim_id:
        raise MessageIsClaimed()
