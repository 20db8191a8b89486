"""`python -m bench`: the node's throughput per driver, and what the proxy costs, in BENCHMARKS.md.

Node: for each driver and node count, real `marconi node` processes sharing one port
(SO_REUSEPORT) over one partition (FerretDB for the MongoDB driver), driven by wrk.
Proxy: the same workload against a SQLite partition's nodes directly and through `marconi proxy`
over a catalog in a real etcd: throughput ratio, added latency at the median, the proxy's CPU time
per forwarded request, and how soon a placement change in etcd reaches the proxy.
Catalog: a new proxy on a catalog of a million placements (`bench.catalog`).
Workers: the node's and the proxy's throughput with `--workers 2` against one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import busy, catalog, migration, mongodb, notifications, workers
from bench.cluster import direct, storage
from bench.overhead import measure_overhead
from bench.reference import compare_nginx
from bench.report import (
    Context,
    NodeRow,
    document,
    nginx_section,
    nginx_summary,
    node_section,
    postgresql_section,
    proxy_section,
    proxy_summary,
    workers_section,
)
from bench.scenarios import NODE_SCENARIOS, Load, measure, warm_up
from bench.statements import measure_statements

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "node",
    "proxy",
    "nginx",
    "migration",
    "busy",
    "catalog",
    "postgresql",
    "mongodb",
    "workers",
    "notifications",
)


def node_rows(base: Path, drivers: list[str], counts: list[int], load: Load) -> list[NodeRow]:
    rows: list[NodeRow] = []
    for driver in drivers:
        for count in counts:
            data = base / f"{driver}-{count}"
            with storage(driver, data) as uri, direct(uri, count, data) as target:
                print(f"== {driver}, {count} node process(es) at {target.url}", flush=True)
                warm_up(target)
                rows.extend(
                    NodeRow(driver, count, measure(target, s, load)) for s in NODE_SCENARIOS
                )
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="length of each scenario")
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--drivers", default="sqlite,mongodb", help="node section: drivers")
    parser.add_argument("--nodes", default="1,2", help="node section: node process counts")
    parser.add_argument(
        "--proxy-nodes", default="1,2", help="proxy section: node process counts per target"
    )
    parser.add_argument(
        "--latency-seconds", type=int, default=5, help="proxy section: length of each -c1 run"
    )
    parser.add_argument(
        "--lag-rounds", type=int, default=50, help="proxy section: placement switches timed"
    )
    parser.add_argument(
        "--catalog-placements", type=int, default=1_000_000, help="catalog section: placements"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="nginx section: rounds of each scenario per target"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, help="run one section; BENCHMARKS.md keeps the other's figures"
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON too")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    load = Load(args.seconds, args.connections, args.threads)
    command = "make bench" if len(sys.argv) == 1 else "python -m bench " + shlex.join(sys.argv[1:])
    wanted = [args.only] if args.only else list(SECTIONS)
    sections: dict[str, str] = {}
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="marconi-bench-") as tmp:
        base = Path(tmp)
        if "node" in wanted:
            rows = node_rows(base, args.drivers.split(","), _ints(args.nodes), load)
            sections["node"] = node_section(rows, Context(command, load))
            results["node"] = [asdict(r) for r in rows]
        if "proxy" in wanted:
            print(f"== load average before the proxy section: {_load()}", flush=True)
            overhead = measure_overhead(
                base / "proxy", _ints(args.proxy_nodes), load, args.latency_seconds, args.lag_rounds
            )
            sections["proxy"] = proxy_section(
                overhead, Context(command, load), args.latency_seconds
            )
            print(proxy_summary(overhead), flush=True)
            print(f"== load average after: {_load()}", flush=True)
            results["proxy"] = asdict(overhead)
        if "nginx" in wanted:
            # The reference a user would otherwise deploy, alternating with the proxy.
            before = _load()
            print(f"== load average before the nginx section: {before}", flush=True)
            rows = compare_nginx(base / "nginx", load, args.rounds)
            after = _load()
            print(f"== load average after: {after}", flush=True)
            sections["nginx"] = nginx_section(rows, Context(command, load), before, after)
            print(nginx_summary(rows), flush=True)
            results["nginx"] = [
                {"scenario": r.scenario.name, "nginx_us": r.nginx_us, "proxy_us": r.proxy_us}
                for r in rows
            ]
        if "migration" in wanted:
            # Messages moved per second, freeze times and client latency during moves.
            with migration.cluster(base / "migration") as c:
                sections["migration"] = asyncio.run(migration.run(c, 100_000, 20, 200))
        if "catalog" in wanted:
            # A new proxy's start, memory, routing and watch lag over 1,000,000 placements.
            figures = catalog.run(base / "catalog", args.catalog_placements, 1000.0, 20.0)
            sections["catalog"] = catalog.section(figures, command)
            results["catalog"] = asdict(figures)

        if "postgresql" in wanted:
            # The PostgreSQL driver against SQLite in the same run, and SQLAlchemy's cost.
            before = _load()
            print(f"== load average before the postgresql section: {before}", flush=True)
            drivers = ["sqlite", "postgresql", "postgresql-tcp"]
            rows = node_rows(base, drivers, _ints(args.nodes), load)
            costs = measure_statements(base / "statements")
            sections["postgresql"] = postgresql_section(rows, costs, Context(command, load), before)
            results["postgresql"] = [asdict(r) for r in rows] + [asdict(c) for c in costs]

        if "workers" in wanted:
            before = _load()
            print(f"== load average before the workers section: {before}", flush=True)
            pairs = workers.measure_workers(base / "workers", load)
            after = _load()
            print(f"== load average after: {after}", flush=True)
            sections["workers"] = workers_section(pairs, Context(command, load), (before, after))
            results["workers"] = [asdict(p) for p in pairs]
        if "busy" in wanted:
            # A hot queue moved: 10,000 live claims, full-speed clients through the proxy.
            with migration.cluster(base / "busy") as c:
                sections["busy"] = asyncio.run(busy.run(c))
        if "mongodb" in wanted:
            # The MongoDB driver on FerretDB's two backends, posts at 1, 16 and 64 connections.
            sections["mongodb"] = mongodb.section(base / "mongodb", args.seconds, command)

        if "notifications" in wanted:
            # Posts/s with 0, 1 and 10 webhook subscriptions, and the delivery lag.
            sections["notifications"] = notifications.section(base, load, command)

    output = Path(args.output)
    previous = output.read_text() if output.exists() else None
    output.write_text(document(sections, previous))
    print(f"wrote {output}")
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


def _load() -> str:
    """The machine's 1, 5 and 15 minute load averages (other processes share its cores)."""
    return ", ".join(f"{n:.2f}" for n in os.getloadavg())


def _ints(raw: str) -> list[int]:
    return [int(n) for n in raw.split(",")]


if __name__ == "__main__":
    sys.exit(main())
