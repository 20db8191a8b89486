"""Rebalance and drain planning: which queues move where. Pure functions over small records.

A queue's cost is its share of what the cluster holds, blended over the measures the caller
could read (queue count always; messages, bytes and request rates when known, each measure
counted only when its total is above zero), so every queue costs something and the costs of all
queues add up to 1. A partition's load is the sum of its queues' costs; its target is the load
of its balance group in proportion to its weight.

Only active partitions take part in a rebalance: draining ones are emptied by a drain, and
read-only ones keep what they have. Moves only ever go to partitions that take new queues
(active, weight above 0), so an active partition of weight 0 is a source only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from catalog.migrations import Migration, Phase
from catalog.records import Partition, PartitionState, Placement
from catalog.registry import MigrationLimits

EPSILON = 1e-12
QueueId = tuple[str, str]  # (project, queue)


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """What is known of one queue: where it lives, and what it holds and serves."""

    project: str
    queue: str
    partition: str
    messages: int = 0
    bytes: int = 0
    requests: float = 0.0  # per second

    @property
    def ident(self) -> QueueId:
        return (self.project, self.queue)


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each measure counts in a queue's cost (measures that total 0 are left out)."""

    queues: float = 1.0
    messages: float = 1.0
    bytes: float = 1.0
    requests: float = 1.0


@dataclass(frozen=True, slots=True)
class Move:
    project: str
    queue: str
    source: str
    target: str
    reason: str

    @property
    def ident(self) -> QueueId:
        return (self.project, self.queue)

    def to_doc(self) -> dict[str, str]:
        return {
            "project": self.project,
            "queue": self.queue,
            "from": self.source,
            "to": self.target,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PartitionLoad:
    """One partition's load as a share of the cluster's, against its target share."""

    partition: str
    state: PartitionState
    weight: int
    queues: int
    messages: int
    share: float
    target: float | None  # None: not balanced (draining or read-only)

    def within(self, tolerance: float) -> bool:
        if self.target is None:
            return True
        return abs(self.share - self.target) <= tolerance * self.target + EPSILON

    def to_doc(self, tolerance: float) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "state": self.state.value,
            "weight": self.weight,
            "queues": self.queues,
            "messages": self.messages,
            "share": round(self.share, 6),
            "target": None if self.target is None else round(self.target, 6),
            "within": self.within(tolerance),
        }


def costs(loads: Sequence[QueueLoad], weights: Weights = Weights()) -> dict[QueueId, float]:
    """Each queue's share of the cluster, blended over the measures with a total above 0."""
    measures: list[tuple[float, Callable[[QueueLoad], float]]] = [
        (weights.queues, lambda q: 1.0),
        (weights.messages, lambda q: float(q.messages)),
        (weights.bytes, lambda q: float(q.bytes)),
        (weights.requests, lambda q: q.requests),
    ]
    used = []
    for weight, value in measures:
        total = sum(value(q) for q in loads)
        if weight > 0 and total > 0:
            used.append((weight, value, total))
    weight_sum = sum(weight for weight, _, _ in used)
    if not used:  # every weight 0: count queues
        return {q.ident: 1.0 / len(loads) for q in loads}
    return {
        q.ident: sum(w * value(q) / total for w, value, total in used) / weight_sum for q in loads
    }


def _balanced(partitions: Iterable[Partition]) -> dict[str, Partition]:
    return {p.name: p for p in partitions if p.state is PartitionState.ACTIVE}


def summarize(
    loads: Sequence[QueueLoad],
    partitions: Sequence[Partition],
    moves: Sequence[Move] = (),
    weights: Weights = Weights(),
) -> list[PartitionLoad]:
    """Every partition's share and target, after `moves` if given, sorted by name."""
    cost = costs(loads, weights)
    moved = {m.ident: m.target for m in moves}
    placed = [replace(q, partition=moved.get(q.ident, q.partition)) for q in loads]
    group = _balanced(partitions)
    group_load = sum(cost[q.ident] for q in placed if q.partition in group)
    group_weight = sum(p.weight for p in group.values())
    found = []
    for p in sorted(partitions, key=lambda p: p.name):
        mine = [q for q in placed if q.partition == p.name]
        target = None
        if p.name in group:
            target = group_load * p.weight / group_weight if group_weight else 0.0
        found.append(
            PartitionLoad(
                partition=p.name,
                state=p.state,
                weight=p.weight,
                queues=len(mine),
                messages=sum(q.messages for q in mine),
                share=sum(cost[q.ident] for q in mine),
                target=target,
            )
        )
    return found


def plan_rebalance(
    loads: Sequence[QueueLoad],
    partitions: Sequence[Partition],
    tolerance: float = 0.1,
    max_moves: int = 10,
    busy: Collection[QueueId] = frozenset(),
    weights: Weights = Weights(),
) -> list[Move]:
    """Greedy moves from the most to the least loaded partition until each is within
    `tolerance` of its target (relative), `max_moves` is reached, or no move helps.

    Each move takes the queue whose cost is nearest half the gap between the two partitions,
    and only a queue smaller than the gap, so every move strictly lowers the sum of squared
    distances to the targets (the plan always ends). Queues in `busy` (moving, or cooling down
    after a move) stay put. Ties break by name, so the same input gives the same plan.
    """
    group = _balanced(partitions)
    cost = costs(loads, weights)
    mine = [q for q in loads if q.partition in group]
    load = {name: 0.0 for name in group}
    for q in mine:
        load[q.partition] += cost[q.ident]
    movable: dict[str, list[QueueLoad]] = {name: [] for name in group}
    for q in sorted(mine, key=lambda q: q.ident):
        if q.ident not in busy:
            movable[q.partition].append(q)
    return _greedy(group, load, movable, cost, tolerance, max_moves)


def _greedy(
    group: dict[str, Partition],
    load: dict[str, float],
    movable: dict[str, list[QueueLoad]],
    cost: Mapping[QueueId, float],
    tolerance: float,
    max_moves: int,
) -> list[Move]:
    group_weight = sum(p.weight for p in group.values())
    if not group_weight:
        return []
    load = dict(load)
    movable = {name: list(queues) for name, queues in movable.items()}
    target = {name: sum(load.values()) * p.weight / group_weight for name, p in group.items()}
    receivers = sorted(name for name, p in group.items() if p.accepts_new_queues)
    moves: list[Move] = []
    while len(moves) < max_moves:
        gap = {name: load[name] - target[name] for name in group}
        if all(abs(gap[n]) <= tolerance * target[n] + EPSILON for n in group):
            break
        found = _best_move(gap, movable, receivers, cost)
        if found is None:
            break
        source, dest, q = found
        reason = (
            f"{source} holds {_percent(load[source], target[source])} of its share, "
            f"{dest} {_percent(load[dest], target[dest])}"
        )
        moves.append(Move(q.project, q.queue, source, dest, reason))
        movable[source].remove(q)
        load[source] -= cost[q.ident]
        load[dest] += cost[q.ident]
    return moves


class Census:
    """What a plan counting queues alone needs of a catalog too large to hold: each partition's
    queue count and its `keep` first movable queues by name (a plan of `keep` moves takes no
    other: every queue costs the same, and ties break by name). Fed a page at a time."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.queues: Counter[str] = Counter()
        self._movable: dict[str, list[QueueId]] = {}

    @property
    def total(self) -> int:
        return sum(self.queues.values())

    def add(self, ident: QueueId, partition: str, movable: bool) -> None:
        self.queues[partition] += 1
        if movable:
            kept = self._movable.setdefault(partition, [])
            kept.append(ident)
            if len(kept) >= 2 * self.keep:
                kept.sort()
                del kept[self.keep :]

    def movable(self, partition: str) -> list[QueueId]:
        return sorted(self._movable.get(partition, []))[: self.keep]

    def plan(
        self, partitions: Sequence[Partition], tolerance: float = 0.1, max_moves: int = 10
    ) -> list[Move]:
        """As `plan_rebalance` over the whole catalog with queue counts alone (`max_moves` at
        most `keep`)."""
        total = self.total
        group = _balanced(partitions)
        if not total:
            return []
        load = {name: self.queues[name] / total for name in group}
        movable: dict[str, list[QueueLoad]] = {}
        cost: dict[QueueId, float] = {}
        for name in group:
            movable[name] = [QueueLoad(p, q, name) for p, q in self.movable(name)]
            cost.update((q.ident, 1.0 / total) for q in movable[name])
        return _greedy(group, load, movable, cost, tolerance, min(max_moves, self.keep))

    def summarize(
        self, partitions: Sequence[Partition], moves: Sequence[Move] = ()
    ) -> list[PartitionLoad]:
        """As `summarize` with queue counts alone, after `moves` if given."""
        queues = Counter(self.queues)
        for m in moves:
            queues[m.source] -= 1
            queues[m.target] += 1
        total = self.total
        group = _balanced(partitions)
        group_load = sum(queues[name] for name in group) / total if total else 0.0
        group_weight = sum(p.weight for p in group.values())
        found = []
        for p in sorted(partitions, key=lambda p: p.name):
            target = None
            if p.name in group:
                target = group_load * p.weight / group_weight if group_weight else 0.0
            share = queues[p.name] / total if total else 0.0
            found.append(PartitionLoad(p.name, p.state, p.weight, queues[p.name], 0, share, target))
        return found


def _best_move(
    gap: dict[str, float],
    movable: dict[str, list[QueueLoad]],
    receivers: list[str],
    cost: Mapping[QueueId, float],
) -> tuple[str, str, QueueLoad] | None:
    """From the most loaded source and least loaded receiver that have a helpful queue."""
    for source in sorted(gap, key=lambda n: (-gap[n], n)):
        for dest in sorted(receivers, key=lambda n: (gap[n], n)):
            room = gap[source] - gap[dest]
            if room <= EPSILON:
                break  # receivers only get fuller from here on
            if dest == source:
                continue
            fits = [q for q in movable[source] if cost[q.ident] < room - EPSILON]
            if fits:
                best = min(fits, key=lambda q: (abs(cost[q.ident] - room / 2), q.ident))
                return source, dest, best
    return None


def _percent(load: float, target: float) -> str:
    return f"{load / target:.0%}" if target > EPSILON else f"{load:.1%} (target 0)"


def plan_drain(
    partition: str,
    placements: Sequence[Placement],
    partitions: Sequence[Partition],
    busy: Collection[QueueId] = frozenset(),
    counts: Mapping[str, int] | None = None,
) -> list[Move]:
    """Every queue of `partition` in `placements` (but those in `busy`) onto the partitions that
    take new queues, each to the one with the fewest queues for its weight. Empty when none
    takes any. `counts` (queues per partition) stands for the whole catalog when `placements`
    holds only the first queues of `partition` by name: the plan is then the whole one's first
    moves."""
    receivers = sorted(
        (p for p in partitions if p.accepts_new_queues and p.name != partition),
        key=lambda p: p.name,
    )
    if not receivers:
        return []
    counts = Counter(counts) if counts is not None else Counter(p.partition for p in placements)
    moves = []
    owned = sorted((p for p in placements if p.partition == partition), key=_placement_key)
    for placement in owned:
        if (placement.project, placement.queue) in busy:
            continue
        dest = min(receivers, key=lambda p: ((counts[p.name] + 1) / p.weight, p.name))
        counts[dest.name] += 1
        moves.append(
            Move(placement.project, placement.queue, partition, dest.name, f"drain {partition}")
        )
    return moves


def _placement_key(p: Placement) -> QueueId:
    return (p.project, p.queue)


def admit(
    moves: Sequence[Move], active: Sequence[Migration], limits: MigrationLimits
) -> list[Move]:
    """The moves that fit, in order, beside the migrations in flight: at most
    `limits.outgoing_per_partition` leaving and `incoming_per_partition` arriving per partition.
    As in the registry, which checks again when it creates them (this only avoids asking in
    vain), a migration counts until its switch: one cleaning up its source takes no room."""
    moving = [m for m in active if m.phase.cancellable]
    outgoing = Counter(m.source for m in moving)
    incoming = Counter(m.target for m in moving)
    chosen = []
    for move in moves:
        if outgoing[move.source] >= limits.outgoing_per_partition:
            continue
        if incoming[move.target] >= limits.incoming_per_partition:
            continue
        outgoing[move.source] += 1
        incoming[move.target] += 1
        chosen.append(move)
    return chosen


def unavailable(
    migrations: Sequence[Migration], limits: MigrationLimits, now: float
) -> set[QueueId]:
    """Queues no plan may move: those moving now, and those that moved within the cool-down."""
    return {
        (m.project, m.queue)
        for m in migrations
        if not m.phase.terminal or (m.phase is Phase.DONE and now - m.updated < limits.cooldown)
    }
