"""Topics (`/v2/topics`) are kept as containers of their own kind next to queues.

A topic is stored, placed and moved as a queue-like container whose name is the topic's name
after `MARK`, a character no queue or topic name may hold. So in every key space the node and the
catalog have (a partition's queues, the catalog's placements) a topic and a queue of the same name
are two keys, queue listings leave topics out, and whatever stores, places or moves a queue
(fences, migration, rebalance, drain) does the same for a topic without knowing it is one.
`MARK` sorts after every character a name may hold, so a project's topics come after its queues
in every byte-ordered listing.
"""

from __future__ import annotations

MARK = "~"


def container(topic: str) -> str:
    """The container that holds `topic`."""
    return MARK + topic


def is_topic(name: str) -> bool:
    """Whether a container name is a topic's."""
    return name.startswith(MARK)


def topic_name(name: str) -> str:
    """The topic a container holds (`name` is a topic's, see `is_topic`)."""
    return name[len(MARK) :]


END = "\x7f"  # after every character a queue or topic name may hold


def name_range(marker: str | None, *, topics: bool) -> tuple[str, str]:
    """The container names a listing of queues (or of topics) after `marker` covers, as bounds
    both excluded: `after < name < before` in byte order."""
    if topics:
        return container(marker or ""), END
    return marker or "", MARK


def described(name: str, *, capital: bool = False) -> str:
    """A container as its users know it, for messages: `queue q` or `topic t`."""
    kind = "topic" if is_topic(name) else "queue"
    shown = topic_name(name) if is_topic(name) else name
    return f"{kind.capitalize() if capital else kind} {shown}"
