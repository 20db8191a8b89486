"""A migration record: one queue moving between partitions, persisted in the catalog as JSON.

The phase is written to etcd before the worker acts on it, so a worker that dies is replaced by
one that resumes from the record. Every step a phase runs is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    INIT = "INIT"
    COPYING = "COPYING"
    CATCHING_UP = "CATCHING_UP"
    FROZEN = "FROZEN"
    SWITCHED = "SWITCHED"  # the point of no return: the target owns the queue
    CLEANUP = "CLEANUP"
    DONE = "DONE"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (Phase.DONE, Phase.CANCELLED, Phase.FAILED)

    @property
    def cancellable(self) -> bool:
        """Before the switch the source is still authoritative, so a cancel can undo the copy."""
        return self in (Phase.INIT, Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN)


# The phases a migration may go to from each phase (a worker refuses any other write).
NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.INIT: frozenset({Phase.COPYING, Phase.CANCELLED, Phase.FAILED}),
    Phase.COPYING: frozenset({Phase.CATCHING_UP, Phase.CANCELLED, Phase.FAILED}),
    Phase.CATCHING_UP: frozenset({Phase.FROZEN, Phase.CATCHING_UP, Phase.CANCELLED, Phase.FAILED}),
    Phase.FROZEN: frozenset({Phase.SWITCHED, Phase.CATCHING_UP, Phase.CANCELLED, Phase.FAILED}),
    Phase.SWITCHED: frozenset({Phase.CLEANUP}),
    Phase.CLEANUP: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
    Phase.CANCELLED: frozenset(),
    Phase.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Progress:
    copied: int = 0  # messages written to the target (upserts, counted again on a re-copy)
    copy_marker: int = 0  # the source marker the bulk copy has reached
    lag: int = 0  # records the last catch-up round had to change: a freeze waits until it is small
    # Convergence, while CATCHING_UP: rounds so far, the changes the source recorded during the
    # last one (what arrived while it absorbed `lag`), the records absorbed per second, and why
    # the lag stopped shrinking and what the worker did about it (None while it shrinks).
    rounds: int = 0
    arrived: int = 0
    rate: float = 0.0
    stalled: str | None = None
    freeze_attempts: int = 0  # freezes aborted (over their limit, or cut short by a worker's death)
    freeze_ms: float = 0.0  # how long the last freeze held writes
    # The source's highest marker when verify passed: a message above it found on the frozen
    # source at cleanup landed after the verify (MongoDB) and is adopted by the target.
    verified_marker: int = 0
    adopted: int | None = None  # such late messages copied at cleanup; None: not looked for yet
    # SWITCHED, not switched yet, and the fence lapsed since verify: freeze, catch up and verify
    # again before the switch (set until that verify passes).
    reverify: bool = False
    purged: int = 0


@dataclass(frozen=True, slots=True)
class Migration:
    id: str
    project: str
    queue: str
    source: str
    target: str
    phase: Phase = Phase.INIT
    created: float = 0.0
    updated: float = 0.0
    cancel_requested: bool = False
    error: str | None = None
    progress: Progress = field(default_factory=Progress)
    # Phase durations in seconds, by phase name, for metrics and `marconi migrate status`.
    timings: dict[str, float] = field(default_factory=dict)

    def to(self, phase: Phase, now: float, **changes: Any) -> Migration:
        if phase not in NEXT[self.phase]:
            raise ValueError(f"migration {self.id}: {self.phase} cannot go to {phase}")
        timings = dict(self.timings)
        timings[self.phase.value] = timings.get(self.phase.value, 0.0) + max(
            0.0, now - self.updated
        )
        return replace(self, phase=phase, updated=now, timings=timings, **changes)

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["phase"] = self.phase.value
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Migration:
        doc = json.loads(raw)
        doc["phase"] = Phase(doc["phase"])
        doc["progress"] = Progress(**doc.get("progress", {}))
        return cls(**doc)
