"""The fence header: how a node says a queue is fenced, why, and when the fence lifts itself.

`X-Marconi-Fence: frozen` on a 503 says the write was refused, unapplied, because the queue is
frozen for a migration (or `moved` away); `frozen; lifts=0.850` adds that the fence lifts itself
in that many seconds (a freeze carries a deadline, so a freeze whose worker vanished ends), after
which the request can be sent to the same node again.
"""

from __future__ import annotations

HEADER = "X-Marconi-Fence"


def fence_header(reason: str, lifts: float | None) -> str:
    return reason if lifts is None else f"{reason}; lifts={max(0.0, lifts):.3f}"


def parse_fence(value: str) -> tuple[str, float | None]:
    """The reason and the seconds until the fence lifts (None: not by itself, or unreadable)."""
    reason, _, rest = value.partition(";")
    name, _, seconds = rest.strip().partition("=")
    try:
        lifts = float(seconds) if name == "lifts" else None
    except ValueError:
        lifts = None
    return reason.strip(), lifts
