"""Where a new queue goes: a project's pin, else consistent hashing with weights.

The ring holds only partitions that accept new queues (active, weight above zero), so draining
and read-only partitions get none. It is rebuilt only when that set or a weight changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from uhashring import HashRing

from catalog.records import Partition, Pin
from proxy.settings import PlacementKey

# Ring points per unit of weight. With 500, three partitions weighted 1:1:2 receive their share
# of a few hundred queues within a few percent; fewer points make the split visibly lumpy.
VNODES = 500

RingShape = tuple[tuple[str, int], ...]


class NoPartition(Exception):
    """No partition accepts new queues (none registered, or all draining / read-only)."""


class PlacementPolicy:
    def __init__(self, key: PlacementKey = PlacementKey.QUEUE) -> None:
        self.key = key
        self._shape: RingShape = ()
        self._ring: HashRing | None = None
        self._seen: dict[str, Partition] = {}

    def choose(
        self,
        project: str,
        queue: str,
        partitions: Mapping[str, Partition],
        pins: Mapping[str, Pin] | None = None,
    ) -> str:
        """The partition a new queue `project/queue` belongs on. Raises `NoPartition`."""
        pin = pins.get(project) if pins else None
        if pin is not None:
            pinned = partitions.get(pin.partition)
            if pinned is not None and pinned.accepts_new_queues:
                return pinned.name
        ring = self._ring_for(partitions)
        if ring is None:
            raise NoPartition("no partition accepts new queues")
        hashed = project if self.key is PlacementKey.PROJECT else f"{project}/{queue}"
        name: str = ring.get_node(hashed)
        return name

    def _ring_for(self, partitions: Mapping[str, Partition]) -> HashRing | None:
        if partitions == self._seen:  # the common case: a few dataclass comparisons
            return self._ring
        self._seen = dict(partitions)
        shape = _shape(partitions)
        if shape != self._shape or self._ring is None:
            self._shape = shape
            self._ring = _build(shape)
        return self._ring


def _shape(partitions: Mapping[str, Partition]) -> RingShape:
    """Accepting partitions and their weights, reduced by their common divisor."""
    accepting = sorted((p.name, p.weight) for p in partitions.values() if p.accepts_new_queues)
    divisor = math.gcd(*(w for _, w in accepting)) if accepting else 1
    return tuple((name, weight // divisor) for name, weight in accepting)


def _build(shape: RingShape) -> HashRing | None:
    if not shape:
        return None
    return HashRing(nodes={name: {"weight": weight, "vnodes": VNODES} for name, weight in shape})
