"""BENCHMARKS.md: the machine, then one section per part of the bench, each with its command.

A run that skips a part keeps that part's section from the previous BENCHMARKS.md as it was.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import watch
from bench.cpu import TICKS_PER_SECOND as TICKS
from bench.overhead import Comparison, Overhead, Pair
from bench.scenarios import Load, Measurement
from bench.wrk import wrk_binary
from tests.services import etcd_binary

TITLES = {
    "node": "## Node (one partition, API v2)",
    "proxy": "## Proxy (one partition: direct vs through the proxy)",
    "migration": "## Migration",
    "mongodb": "## MongoDB driver on FerretDB (both backends)",
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


def split(document: str) -> dict[str, str]:
    """The sections of a previous BENCHMARKS.md, by the keys of TITLES."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^(?=## )", document, flags=re.M):
        for key, title in TITLES.items():
            if chunk.startswith(title):
                sections[key] = chunk.rstrip() + "\n"
    return sections


def document(sections: dict[str, str], previous: str | None) -> str:
    kept = split(previous) if previous else {}
    body = "\n".join(
        sections.get(k) or kept.get(k, "") for k in TITLES if k in sections or k in kept
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
