"""`marconi status`: the cluster at a glance, from three admin requests (health, loads,
migrations in flight), drawn with rich; `--watch` redraws it in place, `--json` prints the same
data for scripts.

A partition's share of the queues and of the messages is drawn as a bar, with a mark where its
weight's share would put it (the balance a rebalance aims at). A migration's bar is how far along
its phases it is; its rate is the messages its bulk copy wrote per second spent copying.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from catalog.migrations import Phase
from marconi.admin import HEALTHY_CATALOG, Subcommands, leaf
from marconi.admin_client import AdminClient
from marconi.arguments import seconds
from marconi.migrations import phase_fraction, queue_name
from marconi.output import emit_json, percent

BAR = 10  # cells of a share bar
PIPE_WIDTH = 120  # columns when stdout is not a terminal (rich would take 80)


def _share(part: Any, whole: int) -> float | None:
    return part / whole if isinstance(part, int) and whole > 0 else None


def copy_rate(m: dict[str, Any], now: float) -> float | None:
    """Messages copied per second spent in COPYING (so far, if it still copies)."""
    copied = (m.get("progress") or {}).get("copied", 0)
    spent = float((m.get("timings") or {}).get(Phase.COPYING.value, 0.0))
    if m.get("phase") == Phase.COPYING:
        spent += max(0.0, now - float(m.get("updated") or now))
    return copied / spent if copied and spent > 0 else None


def _fraction(phase: Any) -> float | None:
    return phase_fraction(Phase(phase)) if phase in Phase.__members__ else None


def collect(client: AdminClient, now: float | None = None) -> dict[str, Any]:
    """The status document: what `--json` prints and the view draws."""
    now = time.time() if now is None else now
    health = client.health()
    loads = client.loads()
    migrations = client.migrations(active=True)
    by_health = health.get("partitions") or {}
    weights = sum(p["weight"] for p in loads["partitions"] if p["state"] == "active")
    queues, messages = loads["queues"], loads["messages"]
    partitions = []
    for p in loads["partitions"]:
        seen = by_health.get(p["partition"]) or {}
        nodes = [{"url": url, **node} for url, node in sorted((seen.get("nodes") or {}).items())]
        active = p["state"] == "active"
        partitions.append(
            {
                "name": p["partition"],
                "state": p["state"],
                "weight": p["weight"],
                "queues": p["queues"],
                "messages": p["messages"],
                "queue_share": _share(p["queues"], queues),
                "message_share": _share(p["messages"], messages or 0),
                "weight_share": p["weight"] / weights if active and weights else None,
                "healthy": bool(seen.get("healthy")),
                "nodes": nodes,
                # Letters waiting in its piles to move to their dead-letter queues (None:
                # unknown); while any wait, it cannot be removed.
                "dead_letters": (seen.get("dead_letters") or {}).get("waiting", 0),
                "dead_letters_more": bool((seen.get("dead_letters") or {}).get("more")),
            }
        )
    return {
        "catalog": health.get("catalog") or {},
        "measured": loads["measured"],
        "queues": queues,
        "messages": messages,
        "partitions": partitions,
        "migrations": [
            {
                "id": m.get("id"),
                "queue": queue_name(m),
                "source": m.get("source"),
                "target": m.get("target"),
                "phase": m.get("phase"),
                "cancel_requested": bool(m.get("cancel_requested")),
                "fraction": _fraction(m.get("phase")),
                "copied": (m.get("progress") or {}).get("copied", 0),
                "lag": (m.get("progress") or {}).get("lag", 0),
                "rate": copy_rate(m, now),
            }
            for m in migrations
        ],
    }


# --- drawing -------------------------------------------------------------------------------------


def share_bar(share: float | None, target: float | None) -> Text:
    """`██████░░░░|░░░ 42.0%`: the share filled, `|` where the weight's share falls."""
    if share is None:
        return Text("-")
    filled = round(BAR * min(1.0, share))
    mark = None if target is None else min(BAR - 1, round(BAR * target))
    bar = Text()
    for i in range(BAR):
        if i == mark:
            bar.append("|", style="bold yellow")
        else:
            bar.append("█" if i < filled else "░", style="cyan" if i < filled else "dim")
    bar.append(f" {percent(share)}")
    return bar


def _count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _health(p: dict[str, Any]) -> Text:
    up = sum(1 for n in p["nodes"] if n.get("healthy"))
    return Text(f"{up}/{len(p['nodes'])} healthy", style="green" if p["healthy"] else "bold red")


def _dead_letters(p: dict[str, Any]) -> Text:
    waiting = p["dead_letters"]
    if waiting is None:
        return Text("?", style="yellow")
    return Text(
        f"{waiting:,}{'+' if p['dead_letters_more'] else ''}", style="yellow" if waiting else ""
    )


def _counted(value: Any, share: float | None, target: float | None) -> Text:
    return Text(f"{_count(value)} ").append_text(share_bar(share, target))


def render(doc: dict[str, Any]) -> RenderableType:
    catalog = doc["catalog"]
    live = catalog.get("state") == HEALTHY_CATALOG
    head = Text("catalog watch ")
    head.append(str(catalog.get("state", "unknown")), style="green" if live else "bold red")
    head.append(f" (revision {catalog.get('revision', '-')})  ")
    head.append(f"{_count(doc['queues'])} queues, {_count(doc['messages'])} messages")

    parts = Table(box=box.SIMPLE_HEAD, title="partitions", title_justify="left")
    for column in ("PARTITION", "STATE", "WEIGHT", "QUEUES", "MESSAGES", "NODES", "DEAD LETTERS"):
        parts.add_column(column, no_wrap=True)
    nodes = Table(box=box.SIMPLE_HEAD, title="nodes", title_justify="left")
    for column in ("PARTITION", "NODE", "HEALTHY", "OUTSTANDING"):
        nodes.add_column(column, no_wrap=True)
    for p in doc["partitions"]:
        parts.add_row(
            p["name"],
            p["state"],
            str(p["weight"]),
            _counted(p["queues"], p["queue_share"], p["weight_share"]),
            _counted(p["messages"], p["message_share"], p["weight_share"]),
            _health(p),
            _dead_letters(p),
        )
        for n in p["nodes"]:
            healthy = Text("yes", style="green") if n.get("healthy") else Text("no", style="red")
            nodes.add_row(p["name"], n["url"], healthy, str(n.get("outstanding", "-")))
    note = Text(
        "(| marks where each active partition's weight would put its share; DEAD LETTERS: waiting"
        " in its piles to move to their dead-letter queues, ? unknown: no removal until 0)",
        style="dim",
    )
    shown: list[RenderableType] = [head, parts, note, nodes]
    if not doc["migrations"]:
        return Group(*shown, Text("No migration in flight."))
    moves = Table(box=box.SIMPLE_HEAD, title="migrations in flight", title_justify="left")
    for column in ("ID", "QUEUE", "ROUTE", "PHASE", "PROGRESS", "COPIED", "RATE", "LAG"):
        moves.add_column(column, no_wrap=True)
    for m in doc["migrations"]:
        moves.add_row(
            m["id"],
            m["queue"],
            f"{m['source']} -> {m['target']}",
            m["phase"] + (" (cancel requested)" if m["cancel_requested"] else ""),
            ProgressBar(total=1.0, completed=m["fraction"] or 0.0, width=BAR),
            _count(m["copied"]),
            "-" if m["rate"] is None else f"{m['rate']:,.0f} msg/s",
            _count(m["lag"]),
        )
    return Group(*shown, moves)


# --- the command ---------------------------------------------------------------------------------


def status(client: AdminClient, args: argparse.Namespace) -> int:
    """Exit 0 once drawn (or, with `--watch`, when interrupted); 3 when the API is unreachable."""
    if args.json:
        emit_json(collect(client))
        return 0
    console = Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
    if not args.watch:
        console.print(render(collect(client)))
        return 0
    return watch(console, lambda: render(collect(client)), args.interval)


def watch(console: Console, draw: Callable[[], RenderableType], interval: float) -> int:
    """Redraw in place every `interval` seconds until Ctrl-C."""
    try:
        with Live(draw(), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(draw(), refresh=True)
    except KeyboardInterrupt:
        return 0


def add_commands(commands: Subcommands) -> None:
    parser = leaf(
        commands,
        "status",
        status,
        "the cluster at a glance: partitions' shares of queues and messages against their "
        "weights, their nodes, migrations in flight, the catalog watch",
    )
    parser.add_argument("--watch", action="store_true", help="redraw it until Ctrl-C")
    parser.add_argument(
        "--interval",
        type=seconds,
        default=2.0,
        metavar="SECONDS",
        help="between two redraws with --watch (default: 2)",
    )
