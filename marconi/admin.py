"""The admin commands (`partitions`, `queues`, `pins`, `health`): flags in, one admin request out.
(`migrate`, `drain` and `rebalance` live in `marconi.migrations`, on the same pieces.)

Exit codes scripts can trust: 0 done; 1 the cluster refused (invalid, not found, conflict,
forbidden, or an unhealthy cluster for `health`; a migration that failed or was cancelled);
2 usage (bad flags, names or URLs, found before anything is sent); 3 the admin API is
unreachable; 4 a `--wait` timed out. Output is a table for people, or one JSON document with
`--json`; errors go to stderr either way.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any, TypeAlias

from marconi.admin_client import DEFAULT_URL, AdminClient, AdminError
from marconi.arguments import STATES, node_url, partition_name, seconds, weight
from marconi.output import emit, emit_json, error, fields, table

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Command = Callable[[AdminClient, argparse.Namespace], int]

HEALTHY_CATALOG = "live"


@functools.cache
def common_flags() -> argparse.ArgumentParser:
    """Flags every admin command takes, after its own arguments."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        metavar="URL",
        help=f"the proxy's admin API (default: $MARCONI_URL, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--token",
        metavar="TOKEN",
        help="a Keystone token with the admin role, for a proxy run with --auth keystone "
        "(default: $MARCONI_AUTH_TOKEN, else one asked of Keystone with the OS_AUTH_URL, "
        "OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME or OS_APPLICATION_CREDENTIAL_* variables)",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document, for scripts")
    common.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="SECONDS", help="(default: 10)"
    )
    return common


def run_command(handler: Command) -> Callable[[argparse.Namespace], int]:
    """Build the client from the flags, run one command, turn its failure into an exit code."""

    def command(args: argparse.Namespace) -> int:
        try:
            return handler(AdminClient(args.url, args.timeout, args.token), args)
        except AdminError as exc:
            error(str(exc))
            return exc.exit_code

    return command


def leaf(group: Subcommands, name: str, handler: Command, help: str) -> argparse.ArgumentParser:
    """An admin command: its parser, with the common flags, running `handler`."""
    parser = group.add_parser(name, parents=[common_flags()], help=help, description=help)
    parser.set_defaults(func=run_command(handler))
    return parser


# --- partitions ----------------------------------------------------------------------------------


def _partition_rows(partitions: list[dict[str, Any]]) -> str:
    return table(
        ["NAME", "STATE", "WEIGHT", "NODES"],
        ([p.get("name"), p.get("state"), p.get("weight"), p.get("nodes")] for p in partitions),
    )


def partitions_list(client: AdminClient, args: argparse.Namespace) -> int:
    partitions = client.partitions()
    if args.json:
        emit_json({"partitions": partitions})
    elif partitions:
        emit(_partition_rows(partitions))
    else:
        emit("No partitions. Add one: marconi partitions add NAME --node URL")
    return 0


def partitions_add(client: AdminClient, args: argparse.Namespace) -> int:
    created, partition = client.add_partition(
        args.name, args.nodes, args.weight, args.state, args.storage or ""
    )
    if args.json:
        emit_json({"created": created, "partition": partition})
    else:
        done = "Added" if created else "Already present, identical:"
        emit(f"{done} partition {args.name}\n{_partition_rows([partition])}")
    return 0


def partitions_set(client: AdminClient, args: argparse.Namespace) -> int:
    changes = {
        key: value
        for key, value in (
            ("weight", args.weight),
            ("state", args.state),
            ("nodes", args.nodes),
            ("storage", args.storage),
        )
        if value is not None
    }
    if not changes:
        error("partitions set: nothing to change; give --weight, --state or --node")
        return 2
    partition = client.update_partition(args.name, changes)
    if args.json:
        emit_json(partition)
    else:
        emit(f"Updated partition {args.name}\n{_partition_rows([partition])}")
    return 0


def partitions_remove(client: AdminClient, args: argparse.Namespace) -> int:
    client.remove_partition(args.name, force=args.force)
    if args.json:
        emit_json({"removed": args.name})
    else:
        emit(f"Removed partition {args.name}")
    return 0


# --- queues and pins -----------------------------------------------------------------------------


def queues_where(client: AdminClient, args: argparse.Namespace) -> int:
    found = client.placement(args.project, args.queue)
    if args.json:
        emit_json(found)
        return 0
    pairs: list[tuple[str, Any]] = [
        ("project", args.project or "_"),
        ("queue", args.queue),
        ("placed", found.get("placed")),
        ("partition", found.get("partition")),
    ]
    if found.get("placed"):
        pairs += [("epoch", found.get("epoch")), ("state", found.get("state"))]
    else:
        pairs.append(("note", "not placed yet; the policy would put it on this partition"))
    emit(fields(pairs))
    return 0


def pins_list(client: AdminClient, args: argparse.Namespace) -> int:
    pins = client.pins()
    if args.json:
        emit_json({"pins": pins})
    elif pins:
        emit(
            table(
                ["PROJECT", "PARTITION"],
                ((p.get("project") or "_", p.get("partition")) for p in pins),
            )
        )
    else:
        emit("No pins. Pin a project: marconi pins set PROJECT PARTITION")
    return 0


def pins_set(client: AdminClient, args: argparse.Namespace) -> int:
    client.pin(args.project, args.partition)
    if args.json:
        emit_json({"project": args.project, "partition": args.partition})
    else:
        emit(f"Pinned project {args.project or '_'}: its new queues go to {args.partition}")
    return 0


def pins_remove(client: AdminClient, args: argparse.Namespace) -> int:
    client.unpin(args.project)
    if args.json:
        emit_json({"unpinned": args.project})
    else:
        emit(f"Unpinned project {args.project or '_'}: the placement policy decides again")
    return 0


# --- health --------------------------------------------------------------------------------------


def health(client: AdminClient, args: argparse.Namespace) -> int:
    """Exit 0 only when the catalog watch is live and every partition is healthy."""
    report = client.health()
    catalog = report.get("catalog") or {}
    partitions: dict[str, Any] = report.get("partitions") or {}
    healthy = catalog.get("state") == HEALTHY_CATALOG and all(
        p.get("healthy") for p in partitions.values()
    )
    if args.json:
        emit_json(report)
        return 0 if healthy else 1
    rows = []
    for name, partition in sorted(partitions.items()):
        nodes: dict[str, Any] = partition.get("nodes") or {}
        for i, (url, node) in enumerate(sorted(nodes.items()) or [("-", {})]):
            first = i == 0
            rows.append(
                [
                    name if first else "",
                    partition.get("healthy") if first else "",
                    url,
                    node.get("healthy"),
                    node.get("outstanding"),
                ]
            )
    emit(fields([("catalog", f"{catalog.get('state')} (revision {catalog.get('revision')})")]))
    emit("\n" + table(["PARTITION", "HEALTHY", "NODE", "NODE HEALTHY", "OUTSTANDING"], rows))
    emit("\n" + ("healthy" if healthy else "NOT healthy"))
    return 0 if healthy else 1


# --- the parser ----------------------------------------------------------------------------------


def add_commands(commands: Subcommands) -> None:
    def nodes_flag(parser: argparse.ArgumentParser, required: bool) -> None:
        parser.add_argument(
            "--node",
            dest="nodes",
            action="append",
            type=node_url,
            required=required,
            metavar="URL",
            help="a node serving the partition, e.g. http://10.0.0.5:8889 (repeat for more"
            + (")" if required else "; replaces the whole list)"),
        )

    partitions = commands.add_parser(
        "partitions",
        help="list, add, change and remove partitions",
        description="Partitions are storage deployments and the nodes serving them.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf(partitions, "list", partitions_list, "list the partitions in the catalog")

    add = leaf(
        partitions,
        "add",
        partitions_add,
        "register a partition (adding an identical one again is a no-op; exit 1 if it "
        "exists with other settings)",
    )
    add.add_argument("name", type=partition_name, metavar="NAME")
    nodes_flag(add, required=True)
    add.add_argument(
        "--weight", type=weight, default=1, metavar="N", help="share of new queues (default: 1)"
    )
    add.add_argument("--state", choices=STATES, default="active", help="(default: active)")
    add.add_argument(
        "--storage",
        metavar="URI",
        help="the partition's storage URI, which migration workers open directly",
    )

    change = leaf(partitions, "set", partitions_set, "change a partition's weight, state or nodes")
    change.add_argument("name", type=partition_name, metavar="NAME")
    nodes_flag(change, required=False)
    change.add_argument(
        "--weight", type=weight, metavar="N", help="share of new queues; 0 takes none"
    )
    change.add_argument(
        "--state",
        choices=STATES,
        help="draining and read-only partitions serve their queues but get no new ones",
    )
    change.add_argument("--storage", metavar="URI", help="the partition's storage URI")

    remove = leaf(
        partitions,
        "remove",
        partitions_remove,
        "remove a partition from the catalog (refused, exit 1, while it owns queues or dead "
        "letters wait in its piles to move to their dead-letter queues)",
    )
    remove.add_argument("name", type=partition_name, metavar="NAME")
    remove.add_argument(
        "--force",
        action="store_true",
        help="remove it even when its nodes cannot tell what its piles hold, or they still "
        "hold dead letters (those are lost); never while it owns queues",
    )

    queues = commands.add_parser(
        "queues", help="where queues live", description="Where queues live."
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    where = leaf(queues, "where", queues_where, "show the partition that owns a queue")
    where.add_argument("project", metavar="PROJECT", help='the project ("_" or "" for none)')
    where.add_argument("queue", metavar="QUEUE")

    pins = commands.add_parser(
        "pins",
        help="keep a project's new queues on one partition",
        description="A pin sends every new queue of a project to one partition, whatever the "
        "placement policy says. Queues placed before keep their partition.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf(pins, "list", pins_list, "list the pinned projects")
    pin = leaf(pins, "set", pins_set, "pin a project's new queues to a partition")
    pin.add_argument("project", metavar="PROJECT")
    pin.add_argument("partition", type=partition_name, metavar="PARTITION")
    unpin = leaf(pins, "remove", pins_remove, "remove a project's pin")
    unpin.add_argument("project", metavar="PROJECT")

    leaf(
        commands,
        "health",
        health,
        "the catalog watch and every partition's nodes, as the proxy sees them "
        "(exit 1 if anything is unhealthy)",
    )
