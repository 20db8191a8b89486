"""`marconi drain` and `marconi rebalance`: moves planned by the admin API, started within the
partition limits. A drain goes on as its migrations finish: each call starts the next ones, and
`--wait` calls until the partition owns nothing and no dead letter waits in its piles (exit 0),
a migration fails or is cancelled (exit 1), or `--wait-timeout` runs out (exit 4).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from catalog.migrations import Phase
from marconi.admin import Subcommands, leaf
from marconi.admin_client import AdminClient, TimedOut
from marconi.arguments import fraction, partition_name, positive
from marconi.migrations import (
    NO_WORKER_HINT,
    deadline,
    no_worker,
    progress_for,
    queue_name,
    rows,
    state,
    unclaimed,
    wait_flags,
)
from marconi.output import emit, emit_json, error, percent, table
from marconi.progress import duration

# --- drain ---------------------------------------------------------------------------------------


def drain(client: AdminClient, args: argparse.Namespace) -> int:
    report = client.drain(args.partition)
    if not args.wait:
        if args.json:
            emit_json(report)
        else:
            emit(_drain_summary(report))
        return 0
    progress, until, started = progress_for(args), deadline(args), time.monotonic()
    total = report["remaining"]
    following: dict[str, dict[str, Any]] = {}
    hinted = False
    while report["remaining"] or report["moving"] or letters_wait(report):
        # A migration that left the moving list ended: a failed or cancelled one stops the wait.
        moving = {m["id"]: m for m in report["moving"]}
        for ended in [following[i] for i in following if i not in moving]:
            last = client.migration(ended["id"])
            if last["phase"] != Phase.DONE:
                progress.close()
                if args.json:
                    emit_json({**report, "failed": last})
                return _stop(last)
        following = moving
        total = max(total, report["remaining"])
        moved = total - report["remaining"]
        now = "; ".join(state(m) for m in report["moving"])
        text = f"{args.partition}: {moved} of {total} queues moved" + (f"; {now}" if now else "")
        stage = f"{report['remaining']} " + ",".join(f"{i}:{m['phase']}" for i, m in moving.items())
        if not report["remaining"] and letters_wait(report):
            text += f"; {dead_letters(report)}"
            stage += f" {report['dead_letters']['waiting']}"  # a line as their count changes
        progress.update(moved / total if total else 1.0, text, stage=stage)
        idle = max((unclaimed(m) for m in report["moving"]), default=0.0)
        if idle > NO_WORKER_HINT and not hinted:
            hinted = True
            progress.note(no_worker(idle))
        if until is not None and time.monotonic() >= until:
            progress.close()
            if args.json:
                emit_json(report)
            left = f"{report['remaining']} queues left"
            if letters_wait(report):
                left += f" and {dead_letters(report)}"
            error(
                f"drain of {args.partition}: {left} after "
                f"{duration(time.monotonic() - started)}; it goes on as you run marconi drain "
                f"{args.partition} again"
            )
            return TimedOut.exit_code
        time.sleep(args.interval)
        report = client.drain(args.partition)
    progress.close()
    if args.json:
        emit_json(report)
    else:
        emit(
            f"Drained {args.partition}: it owns no queues and no dead letters wait in its piles"
            f" ({duration(time.monotonic() - started)})."
            f" Remove it with: marconi partitions remove {args.partition}"
        )
    return 0


def letters_wait(report: dict[str, Any]) -> bool:
    """Whether dead letters may still wait in the partition's piles (an unknown count may)."""
    piles = report.get("dead_letters") or {"waiting": 0, "more": False}
    return piles["waiting"] != 0 or bool(piles["more"])


def dead_letters(report: dict[str, Any]) -> str:
    piles = report["dead_letters"]
    if piles["waiting"] is None:
        return f"its piles of dead letters unknown: {piles.get('unknown')}"
    named = ", ".join(
        f"{p['waiting']} for {p['project'] or '_'}/{p['queue']}" for p in piles["piles"]
    )
    more = " or more" if piles["more"] else ""
    return f"{piles['waiting']}{more} dead letters waiting to move ({named})"


def _stop(m: dict[str, Any]) -> int:
    why = f": {m['error']}" if m.get("error") else ""
    error(
        f"migration {m['id']} of {queue_name(m)} {m['phase']}{why}; the drain stopped waiting "
        f"(run marconi drain {m['source']} again to go on)"
    )
    return 1


def _drain_summary(report: dict[str, Any]) -> str:
    name = report["partition"]
    lines = [f"Partition {name} is {report['state']}: it gets no new queues"]
    lines.append(
        f"{report['remaining']} queues left, {len(report['moving'])} moving, "
        f"{report.get('cooling_down', 0)} cooling down after a recent move"
    )
    if letters_wait(report):
        lines.append(f"{dead_letters(report)[0].upper()}{dead_letters(report)[1:]}")
    if report.get("cancelled"):
        cancelled = len(report["cancelled"])
        lines.append(f"Cancelled {cancelled} migrations that were bringing queues in")
    if report["created"]:
        lines += ["", "Started:", rows(report["created"])]
    if report["planned"]:
        lines += ["", f"Planned ({len(report['planned'])} moves):", _moves(report["planned"])]
    if report["remaining"] or letters_wait(report):
        lines += ["", f"Follow it to the end: marconi drain {name} --wait"]
    return "\n".join(lines)


def _moves(moves: list[dict[str, Any]]) -> str:
    return table(
        ["PROJECT", "QUEUE", "FROM", "TO", "REASON"],
        ([m["project"] or "_", m["queue"], m["from"], m["to"], m["reason"]] for m in moves),
    )


# --- rebalance -----------------------------------------------------------------------------------


def rebalance(client: AdminClient, args: argparse.Namespace) -> int:
    report = client.rebalance(args.dry_run, args.max_moves, args.tolerance)
    if args.json:
        emit_json(report)
        return 0
    after = {p["partition"]: p for p in report.get("after", [])}
    emit(
        f"Partition loads (measured: {', '.join(report.get('measured', []))}; "
        f"tolerance {percent(report.get('tolerance'))})\n"
        + table(
            ["PARTITION", "STATE", "WEIGHT", "QUEUES", "MESSAGES", "SHARE", "TARGET", "AFTER"],
            (
                [
                    p["partition"],
                    p["state"],
                    p["weight"],
                    p["queues"],
                    p["messages"],
                    percent(p["share"]),
                    percent(p["target"]),
                    percent(after.get(p["partition"], {}).get("share")),
                ]
                for p in report.get("loads", [])
            ),
        )
    )
    plan = report["plan"]
    if not plan:
        emit("\nBalanced within the tolerance, or no move would help: nothing to move.")
        return 0
    emit(f"\nPlan ({len(plan)} moves):\n{_moves(plan)}")
    if args.dry_run:
        emit("\nDry run: nothing was started.")
    else:
        created = report["created"]
        emit(f"\nStarted {len(created)} of {len(plan)} moves (one per partition at a time):")
        if created:
            emit(rows(created))
        emit("Run marconi rebalance again as they finish to start the rest.")
    return 0


def add_commands(commands: Subcommands) -> None:
    drain_cmd = leaf(
        commands,
        "drain",
        drain,
        "move every queue off a partition: mark it draining and start its first migrations "
        "(each call starts the next ones; --wait calls until it owns nothing and no dead "
        "letter waits in its piles)",
    )
    drain_cmd.add_argument("partition", type=partition_name, metavar="PARTITION")
    wait_flags(drain_cmd, "the drain")

    balance = leaf(
        commands,
        "rebalance",
        rebalance,
        "plan moves that bring every active partition within the tolerance of its share by "
        "weight (queues and messages), and start what the partition limits allow",
    )
    balance.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    balance.add_argument(
        "--max-moves", type=positive, default=10, metavar="N", help="plan at most N (default: 10)"
    )
    balance.add_argument(
        "--tolerance",
        type=fraction,
        default=0.1,
        metavar="F",
        help="how far from its share a partition may be, 0.1 being 10%% (default: 0.1)",
    )
