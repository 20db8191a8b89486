"""The catalog's records: frozen dataclasses with their JSON form (readable with etcdctl)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class PartitionState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"  # serves its queues, gets no new ones, is being emptied
    READ_ONLY = "read-only"  # serves its queues, gets no new ones


class PlacementState(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  # a migration's freeze: writes wait until the switch


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    weight: int = 1
    state: PartitionState = PartitionState.ACTIVE
    # The storage URI (sqlite:///..., mongodb://...) that migration workers open directly.
    storage: str = ""

    @property
    def accepts_new_queues(self) -> bool:
        return self.state is PartitionState.ACTIVE and self.weight > 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "nodes": list(self.nodes),
                "weight": self.weight,
                "state": self.state.value,
                "storage": self.storage,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Partition:
        doc = json.loads(raw)
        return cls(
            name=doc["name"],
            nodes=tuple(doc.get("nodes", ())),
            weight=int(doc.get("weight", 1)),
            state=PartitionState(doc.get("state", "active")),
            storage=doc.get("storage", ""),
        )


@dataclass(frozen=True, slots=True)
class Placement:
    project: str
    queue: str
    partition: str
    epoch: int = 1
    state: PlacementState = PlacementState.ACTIVE
    migration: str | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "project": self.project,
            "queue": self.queue,
            "partition": self.partition,
            "epoch": self.epoch,
            "state": self.state.value,
        }
        if self.migration:
            doc["migration"] = self.migration
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Placement:
        doc = json.loads(raw)
        return cls(
            project=doc["project"],
            queue=doc["queue"],
            partition=doc["partition"],
            epoch=int(doc.get("epoch", 1)),
            state=PlacementState(doc.get("state", "active")),
            migration=doc.get("migration"),
        )


@dataclass(frozen=True, slots=True)
class Pin:
    """Every new queue of `project` goes to `partition`, whatever the policy says."""

    project: str
    partition: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Pin:
        doc = json.loads(raw)
        return cls(project=doc["project"], partition=doc["partition"])


@dataclass(frozen=True, slots=True)
class Versioned:
    """A raw catalog value with the etcd revisions that compare-and-swap writes need."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch: `value` is None for a delete."""

    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    items: list[Versioned] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a prefix read at `revision`; `more` when keys follow the last one."""

    revision: int
    items: list[Versioned] = field(default_factory=list)
    more: bool = False


@dataclass(frozen=True, slots=True)
class Lookup:
    """One key's value (None: absent) and the store revision it was read at."""

    value: Versioned | None
    revision: int
