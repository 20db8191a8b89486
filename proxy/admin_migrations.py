"""The admin API's migrations (role `admin`): create, list, get and cancel them; drain a
partition; plan and start a rebalance.

Migrations are records in the catalog (`catalog.registry`); the migration workers act on them.
Drain and rebalance create at most what the per-partition limits allow at once and answer with
the plan (a drain's next `MAX_MOVES` moves at most): a drain goes on as its migrations finish,
each call creating the next ones (the CLI's `--wait` calls it until the partition owns nothing
and the dead letters waiting in its piles have moved: `dead_letters`, `proxy.piles`).
Both read the catalog a page at a time and never hold it whole (`proxy.load`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from aiohttp import web

from catalog.catalog import Catalog
from catalog.errors import NotFound, Refused
from catalog.migrations import Migration
from catalog.planner import Move, admit, plan_drain, plan_rebalance, summarize, unavailable
from catalog.records import Partition, PartitionState
from catalog.registry import Registry
from ground.logs import get_logger
from proxy.admin import NAME, path_partition, read_body
from proxy.errors import BadRequest
from proxy.load import LoadReader
from proxy.piles import PileReader
from wire.answers import ok
from wire.request import param_bool
from wire.topics import container
from wire.validation import PROJECT_ID_MAX_LEN, QUEUE_NAME, utf8

log = get_logger("proxy.admin")

MIGRATION_ID = re.compile(r"^[0-9a-f]{24}$")
MAX_MOVES = 1000
DEFAULT_TOLERANCE = 0.1


def _doc(m: Migration) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(m.to_json())
    return doc


async def _optional_body(request: web.Request) -> dict[str, Any]:
    return await read_body(request) if await request.read() else {}


def _text(doc: dict[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise BadRequest(f'"{key}" must be {what}.')
    return value


def _project(doc: dict[str, Any]) -> str:
    project = doc.get("project", "")
    if not isinstance(project, str) or len(project) > PROJECT_ID_MAX_LEN or not utf8(project):
        raise BadRequest('"project" must be a project id ("" or "_" for none).')
    return "" if project == "_" else project


def _number(doc: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f'"{key}" must be a number from {low:g} to {high:g}.')
    return float(value)


def _whole(doc: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f'"{key}" must be a whole number from {low} to {high}.')
    return value


def _migration_id(request: web.Request) -> str:
    found = request.match_info["id"]
    if not MIGRATION_ID.match(found):
        raise NotFound(f"migration {found} does not exist")
    return found


def _receives(partition: Partition) -> None:
    if partition.state is not PartitionState.ACTIVE:
        raise Refused(f"partition {partition.name} is {partition.state}: it takes no queues")


class MigrationAdmin:
    def __init__(
        self, catalog: Catalog, registry: Registry, reader: LoadReader, piles: PileReader
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.reader = reader
        self.piles = piles

    def routes(self) -> list[web.RouteDef]:
        one = "/admin/migrations/{id}"
        return [
            web.post("/admin/migrations", self.create_migration),
            web.get("/admin/migrations", self.list_migrations, allow_head=False),
            web.get(one, self.get_migration, allow_head=False),
            web.delete(one, self.cancel_migration),
            web.post("/admin/partitions/{name}/drain", self.drain),
            web.post("/admin/rebalance", self.rebalance),
            web.get("/admin/loads", self.loads, allow_head=False),
        ]

    # --- migrations ------------------------------------------------------------------------------

    async def create_migration(self, request: web.Request) -> web.Response:
        doc = await read_body(request)
        project = _project(doc)
        if "topic" in doc:  # a topic moves as its container (`wire.topics`)
            queue = container(_text(doc, "topic", QUEUE_NAME, "a topic name"))
        else:
            queue = _text(doc, "queue", QUEUE_NAME, "a queue name")
        target = _text(doc, "to", NAME, "a partition name")
        _receives(await self.catalog.partition(target))  # NotFound: 404
        migration = await self.registry.create(project, queue, target)
        log.info("migration_created", id=migration.id, project=project, queue=queue, to=target)
        return ok(_doc(migration), status=201)

    async def list_migrations(self, request: web.Request) -> web.Response:
        migrations = await self.registry.list()
        if param_bool(request, "active"):
            migrations = [m for m in migrations if not m.phase.terminal]
        return ok({"migrations": [_doc(m) for m in migrations]})

    async def get_migration(self, request: web.Request) -> web.Response:
        stored = await self.registry.get(_migration_id(request))
        return ok(_doc(stored.migration))

    async def cancel_migration(self, request: web.Request) -> web.Response:
        """202: the worker that owns it cancels it; 409 once it has switched."""
        migration = await self.registry.request_cancel(_migration_id(request))
        return ok(_doc(migration), status=202)

    # --- drain and rebalance ---------------------------------------------------------------------

    async def drain(self, request: web.Request) -> web.Response:
        name = path_partition(request)
        partition = await self.catalog.partition(name)  # NotFound: 404
        # Migrations before placements: one that switches in between is seen on its way (and
        # counted where it goes), never as done with a placement read before its switch.
        migrations = await self.registry.list()
        partitions = [p for p in await self.catalog.partitions() if p.name != name]
        active = [m for m in migrations if not m.phase.terminal]
        busy = unavailable(migrations, self.registry.limits, self.registry.clock())
        # Queues on their way count where they go, so the receivers fill evenly (those being
        # turned back from here, or cancelled, stay where they are).
        heading = {
            (m.project, m.queue): m.target
            for m in active
            if not (m.phase.cancellable and (m.cancel_requested or m.target == name))
        }
        in_flight = {(m.project, m.queue) for m in active}
        # The catalog a page at a time: counts, and the first queues to move (the plan's head).
        survey = await self.reader.drain_survey(name, heading, busy, in_flight, MAX_MOVES)
        if survey.owned and not any(p.accepts_new_queues for p in partitions):
            raise Refused(f"no active partition with a weight above 0 to drain {name} onto")
        if partition.state is not PartitionState.DRAINING:
            partition = await self.catalog.update_partition(name, state=PartitionState.DRAINING)
            log.info("partition_draining", partition=name, queues=survey.owned)
        cancelled = [await self._turn_back(m) for m in migrations if self._arriving(m, name)]
        planned = plan_drain(name, survey.first, [partition, *partitions], busy, survey.counts)
        created = await self._start(admit(planned, active, self.registry.limits))
        moving = [m for m in active if m.source == name] + created
        report: dict[str, Any] = {
            "partition": name,
            "state": partition.state.value,
            "remaining": survey.owned,
            "moving": [_doc(m) for m in moving],
            "cooling_down": survey.cooling_down,
            "cancelled": [_doc(m) for m in cancelled if m is not None],
            "planned": [m.to_doc() for m in planned],
            "created": [_doc(m) for m in created],
        }
        if not survey.owned and not moving:
            # Its piles, once its queues are gone (a node's read, not on every call of a
            # drain under way): a partition that owns no queue takes no claims, so its piles
            # get no new letters; the drain is over when they are empty.
            report["dead_letters"] = await self.piles.report(partition)
        return ok(report)

    @staticmethod
    def _arriving(m: Migration, name: str) -> bool:
        return m.target == name and m.phase.cancellable and not m.cancel_requested

    async def _turn_back(self, m: Migration) -> Migration | None:
        """A queue on its way into a draining partition is not wanted there: cancel its move."""
        try:
            return await self.registry.request_cancel(m.id)
        except Refused:
            return None  # it switched meanwhile: the drain moves it off again later

    async def rebalance(self, request: web.Request) -> web.Response:
        doc = await _optional_body(request)
        dry_run = doc.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise BadRequest('"dry_run" must be true or false.')
        max_moves = _whole(doc, "max_moves", 10, 1, MAX_MOVES)
        tolerance = _number(doc, "tolerance", DEFAULT_TOLERANCE, 0.0, 1.0)

        partitions = await self.catalog.partitions()
        migrations = await self.registry.list()  # before placements: see `drain`
        active = [m for m in migrations if not m.phase.terminal]
        # A queue on its way counts where it is going, so a second call plans no second move
        # (unless its move is being cancelled: then it stays).
        heading = {
            (m.project, m.queue): m.target
            for m in active
            if not (m.cancel_requested and m.phase.cancellable)
        }
        busy = unavailable(migrations, self.registry.limits, self.registry.clock())
        placements, census = await self.reader.survey(heading, busy, max_moves)
        if census is not None:  # too many queues to hold or to ask for stats: counts alone
            measured = ["queues"]
            plan = census.plan(partitions, tolerance, max_moves)
            before, after = census.summarize(partitions), census.summarize(partitions, plan)
        else:
            loads, measured = await self.reader.loads(placements, {p.name: p for p in partitions})
            loads = [replace(q, partition=heading.get(q.ident, q.partition)) for q in loads]
            plan = plan_rebalance(loads, partitions, tolerance, max_moves, busy)
            before, after = summarize(loads, partitions), summarize(loads, partitions, plan)
        created = [] if dry_run else await self._start(admit(plan, active, self.registry.limits))
        return ok(
            {
                "dry_run": dry_run,
                "tolerance": tolerance,
                "measured": measured,
                "balanced": all(s.within(tolerance) for s in after),
                "loads": [s.to_doc(tolerance) for s in before],
                "after": [s.to_doc(tolerance) for s in after],
                "plan": [m.to_doc() for m in plan],
                "created": [_doc(m) for m in created],
            }
        )

    async def loads(self, request: web.Request) -> web.Response:
        """Each partition's queues and messages (counts, never lists) against its weight's share,
        as a rebalance would measure them now: for `marconi status`."""
        partitions = await self.catalog.partitions()
        placements, census = await self.reader.survey({}, (), 0)  # a page at a time
        if census is not None:  # above the reader's stats limit: queue counts alone
            measured, queues, messages = ["queues"], census.total, None
            summary = census.summarize(partitions)
        else:
            loads, measured = await self.reader.loads(placements, {p.name: p for p in partitions})
            queues, summary = len(loads), summarize(loads, partitions)
            messages = sum(q.messages for q in loads) if "messages" in measured else None
        docs = [s.to_doc(DEFAULT_TOLERANCE) for s in summary]
        for doc in docs:
            doc["messages"] = doc["messages"] if messages is not None else None
        return ok(
            {"measured": measured, "queues": queues, "messages": messages, "partitions": docs}
        )

    async def _start(self, moves: list[Move]) -> list[Migration]:
        """Create the migrations for `moves`; one refused (a racing creator, say) is skipped."""
        created = []
        for move in moves:
            try:
                created.append(await self.registry.create(move.project, move.queue, move.target))
            except (Refused, NotFound) as exc:
                log.info("move_not_started", project=move.project, queue=move.queue, why=str(exc))
        return created
