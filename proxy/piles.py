"""What waits in a partition's outgoing piles of dead letters, asked of its nodes (`GET /piles`,
`node.api.piles`).

A claim past `_max_claim_count` whose dead-letter queue is on another partition puts the letter
in its own partition's pile; the migration workers' mover carries it over later. Until it has,
the pile's partition must stay: a removal would lose the letters (and leave copies held for
ever in their dead-letter queues), and a drain is not over. The count is read live from the
partition's storage through its nodes, so it is right whether or not a mover runs; when no node
answers, it is unknown, and an unknown count is not "empty".
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from catalog.errors import Refused
from catalog.records import Partition
from ground.logs import get_logger
from proxy.errors import ProxyError
from proxy.forward import Forwarder, Outgoing

log = get_logger("proxy.piles")
NODE_PATH = "/piles"  # the nodes' (`node.api.piles`): the proxy's own admin API asks it, no client


async def not_for_clients(request: web.Request) -> web.Response:
    """A client's request for the nodes' `NODE_PATH` (which names other projects' queues) is
    answered here as any unknown path is, never forwarded to a node."""
    raise web.HTTPNotFound()


@dataclass(frozen=True)
class Pile:
    project: str
    queue: str  # the dead-letter queue its letters go to
    waiting: int


@dataclass(frozen=True)
class Piles:
    """A partition's piles as its node read them; `more` when there may be more than
    `waiting` letters (a node reads a bounded number)."""

    waiting: int
    more: bool
    piles: tuple[Pile, ...]

    @property
    def empty(self) -> bool:
        return self.waiting == 0 and not self.more

    def count(self) -> str:
        return f"{self.waiting}{' or more' if self.more else ''}"

    def names(self) -> str:
        return ", ".join(f"{p.waiting} for {p.project or '_'}/{p.queue}" for p in self.piles)

    def to_doc(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "more": self.more,
            "piles": [
                {"project": p.project, "queue": p.queue, "waiting": p.waiting} for p in self.piles
            ],
        }


class PilesUnknown(Exception):
    """No node of the partition told what its piles hold."""


class PileReader:
    def __init__(self, forwarder: Forwarder, timeout: float = 5.0) -> None:
        self.forwarder = forwarder
        self.timeout = timeout  # a node slower than this tells nothing (health stays quick)

    async def read(self, partition: Partition) -> Piles:
        """What `partition`'s piles hold now; raises `PilesUnknown` when no node answers."""
        headers = CIMultiDict({"Accept": "application/json"})
        try:
            async with asyncio.timeout(self.timeout):
                out = Outgoing("GET", NODE_PATH, headers, b"")
                answer = await self.forwarder.send(partition, out)
            if answer.status != 200:
                raise PilesUnknown(f"its node answered {answer.status}")
            doc = json.loads(answer.body)
            piles = tuple(Pile(p["project"], p["queue"], int(p["waiting"])) for p in doc["piles"])
            return Piles(int(doc["waiting"]), bool(doc["more"]), piles)
        except (ProxyError, TimeoutError, OSError) as exc:
            raise PilesUnknown(f"no node of it answered ({type(exc).__name__})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PilesUnknown(f"its node's answer was not understood ({exc!r})") from None

    async def report(self, partition: Partition) -> dict[str, Any]:
        """For a drain's answer: the piles' document, or `waiting` null and why."""
        try:
            return (await self.read(partition)).to_doc()
        except PilesUnknown as exc:
            log.warning("piles_unknown", partition=partition.name, reason=str(exc))
            return {"waiting": None, "more": True, "piles": [], "unknown": str(exc)}

    async def check_empty(self, partition: Partition) -> None:
        """Refused (409) unless `partition`'s piles are known to be empty."""
        name = partition.name
        try:
            piles = await self.read(partition)
        except PilesUnknown as exc:
            raise Refused(
                f"Partition {name} may still hold dead letters waiting to move to their"
                f" dead-letter queues, and {exc}; it is removed once a node of it tells that"
                " its piles are empty."
            ) from None
        if piles.empty:
            return
        raise Refused(
            f"Partition {name} still holds {piles.count()} dead letters waiting to move to"
            f" their dead-letter queues ({piles.names()}); the migration workers move them"
            + (
                "."
                if partition.storage
                else f" once it has a storage URI (marconi partitions set {name} --storage URI)."
            )
            + " Remove it once they have moved."
        )
