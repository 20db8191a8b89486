"""The dry-run twin of the migration steps (`--dry-run`): the same state machine, driven over
steps that read the catalog and the source but write nothing, and a journal in memory. What comes
out is the plan: each step in order, with what it would do."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import structlog
from bson import ObjectId

from catalog.catalog import Catalog
from catalog.errors import NotFound, Refused
from catalog.migrations import Migration, Phase
from catalog.records import Placement, PlacementState
from migrate.copy import Batch
from migrate.journal import MemoryJournal
from migrate.machine import Machine
from migrate.settings import WorkerSettings
from migrate.steps import Move
from migrate.storages import Storages
from node.models import QueueDigest
from node.storage.base import TransferStore


@dataclass(frozen=True, slots=True)
class PlannedStep:
    verb: str  # the step's name in `migrate.steps.Steps`
    detail: str


@dataclass(frozen=True, slots=True)
class Plan:
    steps: list[PlannedStep] = field(default_factory=list)
    counted: bool = False  # the source was read: the counts below are its
    messages: int = 0  # live messages the copy would move
    body_bytes: int = 0  # their bodies' size, as stored (JSON)


class DryRunSteps:
    """`Steps` that only read. `source` None plans from the catalog alone (no counts)."""

    def __init__(
        self, move: Move, catalog: Catalog, source: TransferStore | None, settings: WorkerSettings
    ) -> None:
        self.move = move
        self.catalog = catalog
        self.source = source
        self.settings = settings
        self.planned: list[PlannedStep] = []
        self._messages = 0
        self._bytes = 0

    def _plan(self, verb: str, detail: str) -> None:
        self.planned.append(PlannedStep(verb, detail))

    async def prepare_target(self) -> None:
        self._plan("prepare_target", f"lift any fence an earlier move left on {self.move.target}")

    async def copy_queue(self) -> None:
        m = self.move
        export = None if self.source is None else await self.source.export_queue(m.project, m.queue)
        counter = "" if export is None else f", marker counter {export.counter}"
        self._plan("copy_queue", f"create queue {m.queue} on {m.target} (metadata{counter})")

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        if self.source is None:
            page = []
        else:
            page = await self.source.export_rows(
                self.move.project, self.move.queue, after_marker=after_marker, limit=limit
            )
        self._messages += len(page)
        self._bytes += sum(len(m.body) for m in page)
        if len(page) < limit:  # the last batch: one line for the whole copy
            seconds = self._messages / self.settings.copy_rate
            self._plan(
                "copy_batch",
                f"copy {self._messages} messages ({self._bytes:,} bytes of bodies) to"
                f" {self.move.target} in batches of {limit}"
                f" at up to {self.settings.copy_rate:g}/s (about {seconds:.1f}s)",
            )
        return Batch(len(page), len(page), page[-1].marker if page else after_marker)

    async def catch_up(self) -> int:
        self._plan("catch_up", "copy what changed meanwhile, delete what the source deleted")
        return 0

    def arrived(self) -> int:
        return 0

    async def verify_baseline(self) -> int:
        self._plan(
            "verify_baseline",
            "compare every range of markers on both partitions (counts, checksums) while the"
            " queue is live; the freeze then compares only the ranges changed after this",
        )
        return 0

    async def freeze_source(self, lasts: float) -> None:
        p = await self._placement()
        self._plan(
            "freeze_source",
            f"placement FROZEN (epoch {p.epoch}), then fence {self.move.source}: writes wait"
            f" (at most {self.settings.freeze_limit:g}s, else the freeze is aborted; the"
            f" fence lifts itself after {lasts:g}s should the worker vanish)",
        )

    async def keep_fence(self, lasts: float) -> bool:
        if any(p.verb == "keep_fence" for p in self.planned):
            return True  # asked again on the switch's side: one line says it
        self._plan(
            "keep_fence",
            f"make sure the fence on {self.move.source} held throughout, and make it last"
            f" {lasts:g}s for the switch",
        )
        return True

    async def verify(self) -> QueueDigest:
        self._plan(
            "verify",
            "compare the ranges changed since the baseline, the claims and the queue's record;"
            " the whole queue's digests (counts, ids, checksums) must be equal",
        )
        return QueueDigest(0, 0, "", ())

    async def switch_placement(self) -> Placement:
        p = await self._placement()
        self._plan(
            "switch_placement",
            f"THE POINT OF NO RETURN: placement to {self.move.target} at epoch {p.epoch + 1}",
        )
        return dataclasses.replace(
            p, partition=self.move.target, epoch=p.epoch + 1, state=PlacementState.ACTIVE
        )

    async def mark_moved(self) -> None:
        if not any(s.verb == "mark_moved" for s in self.planned):
            self._plan("mark_moved", f'fence {self.move.source} "moved": stale routes look again')

    async def move_outbox(self) -> int:
        if not any(s.verb == "move_outbox" for s in self.planned):
            self._plan("move_outbox", f"move the notifications owed to {self.move.target}")
        return 0

    async def unfreeze_source(self) -> None:
        return None  # only on the way back, which a plan does not take

    async def stop_tracking(self) -> None:
        if not any(s.verb == "stop_tracking" for s in self.planned):
            self._plan("stop_tracking", "stop tracking the queue's changes on both partitions")

    async def adopt_stragglers(self, verified_marker: int) -> int:
        return 0

    async def purge_source(self, limit: int) -> int:
        s = self.settings
        self._plan(
            "purge_source",
            f"after {s.purge_grace:g}s, drop the {self._messages} messages of {self.move.source}"
            f" in batches of {limit} at up to {s.purge_rate:g}/s",
        )
        return 0

    async def remove_partial_copy(self, limit: int) -> int:
        return 0

    async def _placement(self) -> Placement:
        p = await self.catalog.placement(self.move.project, self.move.queue)
        if p is None:
            raise NotFound(f"queue {self.move.queue} is not placed")
        return p


async def draft(catalog: Catalog, project: str, queue: str, target: str) -> Migration:
    """The migration `marconi migrate` would create, without creating it (limits unchecked)."""
    placement = await catalog.placement(project, queue)
    if placement is None:
        raise NotFound(f"queue {queue} of project {project or '_'} is not placed")
    if placement.partition == target:
        raise Refused(f"queue {queue} is already on {target}")
    await catalog.partition(target)  # raises NotFound
    return Migration(str(ObjectId()), project, queue, placement.partition, target)


async def dry_run(
    catalog: Catalog,
    migration: Migration,
    settings: WorkerSettings,
    storages: Storages | None = None,
) -> Plan:
    """What running `migration` would do, step by step; nothing is written anywhere.

    With `storages`, the source is read for counts; without, the plan is the catalog's alone."""
    source = None if storages is None else (await storages.of(migration.source)).transfer
    steps = DryRunSteps(Move.of(migration), catalog, source, settings)
    start = dataclasses.replace(migration, phase=Phase.INIT)

    async def no_wait(seconds: float) -> None:
        return None

    silent = structlog.wrap_logger(structlog.ReturnLogger())  # a plan, not a migration: no logs
    await Machine(MemoryJournal(start), steps, settings, sleep=no_wait, logger=silent).run()
    return Plan(steps.planned, source is not None, steps._messages, steps._bytes)
