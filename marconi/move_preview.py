"""`marconi migrate move --dry-run`: what moving one queue would do, with nothing written.

The admin API records migrations but cannot tell what a move would copy, so a dry run reads what
a migration worker reads: the catalog in etcd (`--catalog`, else `$MARCONI_CATALOG_URL`, else
the local cluster's) and the source partition's storage at the URI the catalog gives. It runs the
migration's state machine over its dry-run twin (`migrate.dryrun`) and prints the plan, the
messages and bytes the copy would move, and every limit that would refuse the move now (the
proxy's defaults, or `MARCONI_MIGRATIONS_OUT`, `MARCONI_MIGRATIONS_IN` and
`MARCONI_MIGRATION_COOLDOWN` as set here). A SQLite file that is not on this machine is not
created: the plan then comes from the catalog alone, without counts.

Exit codes: 0 the move would be admitted; 1 it would be refused, or the queue or partition is not
found; 2 settings that cannot work; 3 the catalog is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any
from urllib.parse import urlsplit

from catalog.catalog import Catalog
from catalog.errors import CatalogError, CatalogUnavailable, NotFound
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.migrations import Migration
from catalog.records import PartitionState
from catalog.registry import MigrationLimits, Registry
from marconi.output import emit, emit_json, error, fields, table
from migrate.dryrun import Plan, dry_run
from migrate.settings import WorkerSettings
from migrate.storages import PinnedClock, Storages
from node.errors import StorageError
from node.storage.sqlite import sqlite_path
from proxy.settings import ProxySettings

DRY_RUN_ID = "0" * 24  # the id a dry run's migration carries: never recorded


def catalog_url(args: argparse.Namespace, settings: WorkerSettings) -> str:
    return str(args.catalog or settings.catalog_url)


def catalog_prefix(args: argparse.Namespace, settings: WorkerSettings) -> str:
    return str(args.catalog_prefix or settings.key_prefix)


def move(args: argparse.Namespace) -> int:
    """`migrate move ... --dry-run`: print what the move would do; write nothing."""
    try:
        limits = ProxySettings.from_env().migration_limits
        settings = WorkerSettings.from_env()
    except ValueError as exc:
        error(f"migrate move --dry-run: {exc}")
        return 2
    project = "" if args.project == "_" else args.project
    url, prefix = catalog_url(args, settings), catalog_prefix(args, settings)
    try:
        found = preview(url, prefix, project, args.queue, args.to, limits, settings)
        doc = asyncio.run(found)
    except CatalogUnavailable as exc:
        error(f"the catalog at {url} is unreachable: {exc}")
        return 3
    except (NotFound, CatalogError) as exc:
        error(str(exc))
        return 1
    if args.json:
        emit_json(doc)
    else:
        emit(_text(doc))
    return 0 if doc["admitted"] else 1


async def preview(
    url: str,
    prefix: str,
    project: str,
    queue: str,
    target: str,
    limits: MigrationLimits,
    settings: WorkerSettings,
) -> dict[str, Any]:
    """The dry run's findings, as the JSON document `--json` prints."""
    store = EtcdStore(url)
    try:
        catalog = Catalog(store, Keys(prefix))
        source, refused = await Registry(catalog, limits).refusals(project, queue, target)
        receiving = await catalog.partition(target)
        if receiving.state is not PartitionState.ACTIVE:
            refused.append(f"partition {target} is {receiving.state}: it takes no queues")
        migration = Migration(DRY_RUN_ID, project, queue, source, target)
        plan, unread = Plan(), None
        if source != target:
            plan, unread = await _plan(catalog, migration, settings)
    finally:
        await store.close()
    return {
        "dry_run": True,
        "project": project,
        "queue": queue,
        "source": source,
        "target": target,
        "admitted": not refused,
        "refused": refused,
        "limits": {
            "migrations_out": limits.outgoing_per_partition,
            "migrations_in": limits.incoming_per_partition,
            "migration_cooldown": limits.cooldown,
        },
        "counted": plan.counted,
        "unread": unread,
        "messages": plan.messages if plan.counted else None,
        "body_bytes": plan.body_bytes if plan.counted else None,
        "plan": [{"verb": s.verb, "detail": s.detail} for s in plan.steps],
    }


async def _plan(
    catalog: Catalog, migration: Migration, settings: WorkerSettings
) -> tuple[Plan, str | None]:
    """The plan, with counts when the source's storage can be read from here; else why not."""
    uri = (await catalog.partition(migration.source)).storage
    local = urlsplit(uri).scheme == "sqlite"
    if local and not await asyncio.to_thread(os.path.exists, sqlite_path(uri)):
        return await dry_run(catalog, migration, settings), f"{uri} is not on this machine"
    storages = Storages(catalog, PinnedClock())
    try:
        return await dry_run(catalog, migration, settings, storages), None
    except StorageError as exc:
        return await dry_run(catalog, migration, settings), f"{uri}: {exc}"
    finally:
        await storages.close()


def _text(doc: dict[str, Any]) -> str:
    name = f"{doc['project'] or '_'}/{doc['queue']}"
    if doc["counted"]:
        counts = f"{doc['messages']:,} ({doc['body_bytes']:,} bytes of bodies)"
    else:
        counts = f"unknown: the source's storage was not read ({doc['unread']})"
    limits = doc["limits"]
    verdict = "yes" if doc["admitted"] else "no: " + "; ".join(doc["refused"])
    head = fields(
        [
            ("move", f"{name} from {doc['source']} to {doc['target']}"),
            ("messages", counts),
            ("admitted", verdict),
            (
                "limits",
                f"{limits['migrations_out']} out and {limits['migrations_in']} in per partition, "
                f"cool-down {limits['migration_cooldown']:g}s",
            ),
        ]
    )
    text = f"Dry run: nothing was written.\n{head}"
    if doc["plan"]:
        rows = ([s["verb"], s["detail"]] for s in doc["plan"])
        text += "\n\n" + table(["STEP", "WHAT IT WOULD DO"], rows)
    return text
