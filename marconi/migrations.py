"""`marconi migrate`: move one queue, follow, list and cancel migrations (`drain` and
`rebalance`: `marconi.moves`).

The admin API records migrations; the migration workers carry them out. `--wait` follows the
work until it is over: exit 0 when it is done, 1 when a migration failed or was cancelled, 4 when
`--wait-timeout` ran out first (the work goes on in the cluster). Progress goes to stdout (to
stderr with `--json`, so that stdout stays one JSON document): a bar on a terminal, otherwise a
line per phase.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from catalog.migrations import Phase
from marconi.admin import Subcommands, leaf
from marconi.admin_client import AdminClient, TimedOut
from marconi.arguments import migration_id, partition_name, seconds
from marconi.output import ago, emit, emit_json, error, fields, table
from marconi.progress import Progress, duration
from wire.topics import container

ROUTE = [Phase.INIT, Phase.COPYING, Phase.CATCHING_UP, Phase.FROZEN, Phase.SWITCHED]
ROUTE += [Phase.CLEANUP, Phase.DONE]
NO_WORKER_HINT = 15.0  # seconds in INIT before saying that no worker seems to run


def queue_name(m: dict[str, Any]) -> str:
    return f"{m.get('project') or '_'}/{m.get('queue')}"


def phase_fraction(phase: Phase) -> float | None:
    return ROUTE.index(phase) / (len(ROUTE) - 1) if phase in ROUTE else None


def state(m: dict[str, Any]) -> str:
    copied = (m.get("progress") or {}).get("copied", 0)
    route = f"{m.get('source')} -> {m.get('target')}"
    text = f"{queue_name(m)} {route} {m.get('phase')}, {copied:,} copied"
    if m.get("phase") == Phase.CLEANUP:
        text += f" (served by {m.get('target')}; the old copy goes after a grace period)"
    if m.get("phase") == Phase.CATCHING_UP:
        text += f", {convergence(m.get('progress') or {})}"
    return text


def convergence(progress: dict[str, Any]) -> str:
    """A catch-up's convergence: rounds, the last round's lag and rate, and a stall."""
    text = (
        f"round {progress.get('rounds', 0):,}: lag {progress.get('lag', 0):,}"
        f" ({progress.get('arrived', 0):,} arrived meanwhile, {progress.get('rate', 0):,.0f}/s)"
    )
    if progress.get("stalled"):
        text += f"; {progress['stalled']}"
    return text


def _line(m: dict[str, Any], started: float) -> str:
    return f"{m.get('id')} {state(m)}, {duration(time.monotonic() - started)}"


def rows(migrations: list[dict[str, Any]]) -> str:
    now = time.time()
    return table(
        ["ID", "PROJECT", "QUEUE", "FROM", "TO", "PHASE", "COPIED", "LAG", "UPDATED"],
        (
            [
                m.get("id"),
                m.get("project") or "_",
                m.get("queue"),
                m.get("source"),
                m.get("target"),
                f"{m.get('phase')}" + (" (cancel requested)" if m.get("cancel_requested") else ""),
                (m.get("progress") or {}).get("copied"),
                _lag(m),
                ago(m.get("updated"), now),
            ]
            for m in migrations
        ),
    )


def _lag(m: dict[str, Any]) -> str:
    """The last catch-up round's lag, while catching up ("-" otherwise; "!" once stalled)."""
    progress = m.get("progress") or {}
    if m.get("phase") != Phase.CATCHING_UP:
        return "-"
    return f"{progress.get('lag', 0):,}" + ("!" if progress.get("stalled") else "")


def _fields(m: dict[str, Any]) -> str:
    progress: dict[str, Any] = m.get("progress") or {}
    timings: dict[str, float] = m.get("timings") or {}
    now = time.time()
    return fields(
        [
            ("id", m.get("id")),
            ("queue", queue_name(m)),
            ("from", m.get("source")),
            ("to", m.get("target")),
            ("phase", m.get("phase")),
            ("cancel requested", m.get("cancel_requested")),
            ("error", m.get("error")),
            ("messages copied", progress.get("copied")),
            ("copy marker", progress.get("copy_marker")),
            ("catch-up", convergence(progress) if progress.get("rounds") else None),
            ("freeze attempts", progress.get("freeze_attempts")),
            ("last freeze", f"{progress.get('freeze_ms', 0):.0f} ms"),
            ("purged", progress.get("purged")),
            ("created", ago(m.get("created"), now)),
            ("updated", ago(m.get("updated"), now)),
            ("timings", ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) or None),
        ]
    )


def unclaimed(m: dict[str, Any]) -> float:
    """How long a migration has sat in INIT, untouched by any worker (0 once it moved on)."""
    created = m.get("created")
    if m.get("phase") != Phase.INIT or not isinstance(created, int | float):
        return 0.0
    return max(0.0, time.time() - created)


def no_worker(waited: float) -> str:
    return (
        f"still INIT after {duration(waited)}: is a migration worker running? "
        "(marconi worker --catalog URL)"
    )


def progress_for(args: argparse.Namespace) -> Progress:
    if not args.json:
        return Progress(sys.stdout)
    return Progress(sys.stderr if sys.stderr.isatty() else None)


def deadline(args: argparse.Namespace) -> float | None:
    return None if args.wait_timeout is None else time.monotonic() + args.wait_timeout


def _follow(client: AdminClient, m: dict[str, Any], args: argparse.Namespace) -> int:
    """Poll one migration until it ends; its outcome is the exit code."""
    progress, until, started = progress_for(args), deadline(args), time.monotonic()
    hinted = False
    try:
        while not (phase := Phase(m["phase"])).terminal:
            progress.update(phase_fraction(phase), _line(m, started), stage=phase)
            idle = unclaimed(m)
            if idle > NO_WORKER_HINT and not hinted:
                hinted = True
                progress.note(no_worker(idle))
            if until is not None and time.monotonic() >= until:
                waited = duration(time.monotonic() - started)
                raise TimedOut(f"migration {m['id']} is still {phase} after {waited}")
            time.sleep(args.interval)
            m = client.migration(m["id"])
    except TimedOut as exc:
        progress.close()
        if args.json:
            emit_json(m)
        error(f"{exc}; it goes on in the cluster: marconi migrate status {m['id']}")
        return exc.exit_code
    progress.close()
    return _outcome(m, args, time.monotonic() - started)


def _outcome(m: dict[str, Any], args: argparse.Namespace, took: float) -> int:
    phase = Phase(m["phase"])
    if args.json:
        emit_json(m)
    elif phase is Phase.DONE:
        copied = (m.get("progress") or {}).get("copied", 0)
        took_text = duration(took)
        emit(f"Done: {queue_name(m)} is on {m['target']} ({copied:,} messages copied, {took_text})")
    if phase is Phase.DONE:
        return 0
    why = f": {m['error']}" if m.get("error") else ""
    error(f"migration {m['id']} of {queue_name(m)} {phase}{why}")
    return 1


# --- migrate -------------------------------------------------------------------------------------


def migrate_move(client: AdminClient, args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.wait:
            error("migrate move: --dry-run starts nothing to --wait for")
            return 2
        from marconi import move_preview  # reads etcd and storage itself: the worker's dependencies

        if args.topic:
            args.queue = container(args.queue)  # what the worker moves (`wire.topics`)
        return move_preview.move(args)
    m = client.create_migration(args.project, args.queue, args.to, topic=args.topic)
    if args.wait:
        if not args.json:
            emit(f"Created migration {m['id']}: {queue_name(m)} {m['source']} -> {m['target']}")
        return _follow(client, m, args)
    if args.json:
        emit_json(m)
    else:
        emit(f"Created migration {m['id']}: {queue_name(m)} {m['source']} -> {m['target']}")
        emit(f"Follow it: marconi migrate status {m['id']} --wait")
    return 0


def migrate_status(client: AdminClient, args: argparse.Namespace) -> int:
    if args.id is None:
        if args.wait:
            error("migrate status: --wait needs a migration ID")
            return 2
        return _listing(client.migrations(active=True), args, "No migration in progress.")
    m = client.migration(args.id)
    if args.wait:
        return _follow(client, m, args)
    if args.json:
        emit_json(m)
    else:
        emit(_fields(m))
    return 0


def migrate_list(client: AdminClient, args: argparse.Namespace) -> int:
    empty = "No migrations." if args.all else "No migration in progress (--all lists past ones)."
    return _listing(client.migrations(active=not args.all), args, empty)


def _listing(migrations: list[dict[str, Any]], args: argparse.Namespace, empty: str) -> int:
    if args.json:
        emit_json({"migrations": migrations})
    else:
        emit(rows(migrations) if migrations else empty)
    return 0


def migrate_cancel(client: AdminClient, args: argparse.Namespace) -> int:
    m = client.cancel_migration(args.id)
    if args.json:
        emit_json(m)
    elif m["phase"] == Phase.CANCELLED:
        emit(f"Migration {m['id']} of {queue_name(m)} is already cancelled")
    else:
        emit(
            f"Cancel requested for migration {m['id']} of {queue_name(m)} ({m['phase']}): its "
            f"worker stops it and removes the partial copy; {m['source']} keeps the queue"
        )
    return 0


# --- the parser ----------------------------------------------------------------------------------


def wait_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait", action="store_true", help=f"follow {what} to its end, with progress"
    )
    parser.add_argument(
        "--wait-timeout",
        type=seconds,
        metavar="SECONDS",
        help="give up waiting after this long: exit 4 (default: no limit)",
    )
    parser.add_argument(
        "--interval", type=seconds, default=1.0, metavar="SECONDS", help="poll every (default: 1)"
    )


def add_commands(commands: Subcommands) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="move a queue to another partition; follow, list and cancel migrations",
        description="A migration moves one queue (metadata, messages, claims, marker) to another "
        "partition while clients keep using it. The migration worker carries it out.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")

    move = leaf(
        migrate,
        "move",
        migrate_move,
        "start moving a queue (exit 1 if refused: not placed, already moving, a partition "
        "busy with another migration, or moved within the cool-down)",
    )
    move.add_argument("project", metavar="PROJECT", help='the project ("_" or "" for none)')
    move.add_argument("queue", metavar="QUEUE")
    move.add_argument("--to", required=True, type=partition_name, metavar="PARTITION")
    move.add_argument(
        "--topic", action="store_true", help="QUEUE names a topic (/v2/topics): move the topic"
    )
    wait_flags(move, "the migration")
    move.add_argument(
        "--dry-run",
        action="store_true",
        help="start nothing: print the plan, the messages and bytes it would copy, and the "
        "limits that would refuse it now (exit 1 if they would), read from the catalog and the "
        "source's storage as a migration worker reads them",
    )
    move.add_argument(
        "--catalog",
        metavar="URL",
        help="with --dry-run: etcd (default: $MARCONI_CATALOG_URL, else http://127.0.0.1:2379)",
    )
    move.add_argument(
        "--catalog-prefix",
        metavar="PREFIX",
        help="with --dry-run: the catalog's key prefix (default: $MARCONI_CATALOG_PREFIX, else "
        "/marconi/)",
    )

    status = leaf(
        migrate,
        "status",
        migrate_status,
        "one migration in detail, or every migration in progress",
    )
    status.add_argument("id", nargs="?", type=migration_id, metavar="ID")
    wait_flags(status, "the migration")

    listing = leaf(migrate, "list", migrate_list, "the migrations in progress")
    listing.add_argument("--all", action="store_true", help="finished ones too")

    cancel = leaf(
        migrate,
        "cancel",
        migrate_cancel,
        "ask a migration's worker to stop it (exit 1 once it has switched: move it back)",
    )
    cancel.add_argument("id", type=migration_id, metavar="ID")
