"""Notifications benchmark: `python -m bench --only notifications`.

One SQLite node process; a queue with 0, 1 and 10 webhook subscriptions (a fresh node and queue
for each); wrk posts one message per request at full speed, each body carrying the time it was
sent. The subscriber is `bench.receiver`, a process of its own, which keeps the lag from that
time to each notification's receipt. Measured: posts/s (against 0 subscriptions; target with 1:
at least 0.8x), and the delivery lag p50/p99 of the notifications of the posts made during the
run (target p99 < 1 s at that rate), and how long the deliveries took to drain after wrk stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import cpu
from bench.cluster import direct, storage
from bench.report import TITLES
from bench.scenarios import Load
from bench.wrk import run
from tests.services import free_port, wait_for_port

QUEUE = "notified"
HEADERS = {
    "Client-ID": "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60",
    "X-Project-ID": "bench",
    "Content-Type": "application/json",
}
SUBSCRIPTIONS = (0, 1, 10)
DRAIN_LIMIT = 120.0  # seconds the deliveries get to arrive after wrk stopped


@dataclass(frozen=True)
class Row:
    subscriptions: int
    posts_per_s: float
    post_p99_ms: float
    errors: int
    notified: int  # notifications received
    owed: int  # posts acknowledged x subscriptions
    lag_p50_s: float | None
    lag_p99_s: float | None
    drain_s: float | None  # after wrk stopped, until every notification arrived
    node_us_per_post: float  # the node's CPU time, its deliverer process's included, per post
    receiver_us_per_notice: float | None  # the subscriber's CPU time per notification


def _call(url: str, method: str, body: object = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=HEADERS)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def _count(receiver: str) -> int:
    with urllib.request.urlopen(f"{receiver}/count", timeout=10) as answer:
        return int(json.loads(answer.read())["count"])


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def measure(base: Path, subscriptions: int, load: Load, driver: str = "sqlite") -> Row:
    data = base / f"notify-{driver}-{subscriptions}"
    port = free_port()
    out = data / "lags.json"
    with storage(driver, data) as uri, direct(uri, 1, data) as target:
        receiver_proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", str(port), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, receiver_proc)
            receiver = f"http://127.0.0.1:{port}"
            queue = f"{target.url}/v2/queues/{QUEUE}"
            _call(queue, "PUT", {})
            for i in range(subscriptions):
                body = {"subscriber": f"{receiver}/s{i}", "ttl": 3600}
                assert _call(f"{queue}/subscriptions", "POST", body) == 201
            print(f"== notifications: {subscriptions} subscription(s)", flush=True)
            # The node's processes and their deliverer processes (children of each node).
            node_pids = [*target.pids["nodes"], *_deliverers(target.pids["nodes"])]
            node_cpu, receiver_cpu = cpu.total(node_pids), cpu.cpu_seconds(receiver_proc.pid)
            result, _ = run(
                target.url,
                "notify",
                seconds=load.seconds,
                connections=load.connections,
                threads=load.threads,
                env={"QUEUE": QUEUE},
            )
            stopped = time.monotonic()
            owed = (result.requests - result.errors) * subscriptions
            drain: float | None = None
            while time.monotonic() - stopped < DRAIN_LIMIT:
                if _count(receiver) >= owed:
                    drain = time.monotonic() - stopped
                    break
                time.sleep(0.1)
            node_cpu = cpu.total(node_pids) - node_cpu
            receiver_cpu = cpu.cpu_seconds(receiver_proc.pid) - receiver_cpu
        finally:
            receiver_proc.send_signal(signal.SIGTERM)
            receiver_proc.wait(timeout=30)
    lags = json.loads(out.read_text()) if out.exists() else []
    return Row(
        subscriptions,
        result.requests_per_s,
        result.p99_ms,
        result.errors,
        len(lags),
        owed,
        _pct(lags, 0.5),
        _pct(lags, 0.99),
        drain,
        node_cpu * 1e6 / max(1, result.requests),
        receiver_cpu * 1e6 / len(lags) if lags else None,
    )


def _deliverers(nodes: list[int]) -> list[int]:
    """The deliverer processes the nodes started (node/notify/process.py), once they run."""
    deadline = time.monotonic() + 30
    found: list[int] = []
    while time.monotonic() < deadline:
        found = [pid for node in nodes for pid in cpu.descendants(node)]
        if len(found) >= len(nodes):
            break
        time.sleep(0.1)
    return found


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def section(base: Path, load: Load, command: str) -> str:
    before = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    rows = [measure(base, n, load) for n in SUBSCRIPTIONS]
    after = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    lines = [
        "| subscriptions | posts/s | x (0 subscriptions) | post p99 ms | errors "
        "| notifications received / owed | lag p50 s | lag p99 s | drained after wrk, s "
        "| node CPU µs/post | subscriber CPU µs/notification |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_rate = rows[0].posts_per_s or 1.0
    for r in rows:
        lines.append(
            f"| {r.subscriptions} | {r.posts_per_s:,.0f} | {r.posts_per_s / base_rate:.2f} "
            f"| {r.post_p99_ms:.1f} | {r.errors} | {r.notified:,} / {r.owed:,} "
            f"| {_s(r.lag_p50_s)} | {_s(r.lag_p99_s)} | {_s(r.drain_s)} "
            f"| {r.node_us_per_post:,.0f} "
            f"| {'-' if r.receiver_us_per_notice is None else f'{r.receiver_us_per_notice:,.0f}'} |"
        )
    table = "\n".join(lines)
    marginal = [
        f"{(r.node_us_per_post - rows[0].node_us_per_post) / r.subscriptions:,.0f} µs with "
        f"{r.subscriptions}"
        for r in rows[1:]
    ]
    return f"""{TITLES["notifications"]}

Measured with `{command}`: wrk, {load.threads} thread, {load.connections} connections,
{load.seconds} s per row, posting one message per request to one SQLite node process (its
deliverer in a child process of its own) whose queue has 0, 1 or 10 webhook subscriptions, all to
`bench.receiver` (a Python process answering 204). Lag: from the time wrk wrote into the
message's body to the notification's receipt, over every notification received, those sent
after wrk stopped included. Load average before: {before}; after: {after}.
Targets: with 1 subscription at least 0.8x the posts/s of none; lag p99 < 1 s at that rate.

{table}

- The node's CPU time per notification (its CPU per post, its deliverer process's included, less
  that with no subscription, per subscription): {"; ".join(marginal)} subscription(s). The
  deliverer runs in a child process of the node: a post shares no event loop with delivery, but
  on this machine's 2 cores the deliverer, the subscriber and wrk share the core the node does
  not use, and whatever they need beyond it comes out of the posts' share. CPU per post and per
  notification hold better than posts/s when other processes load the machine (see the load
  average): posts/s rows measured under a load above 2 compare poorly with each other.
- *notifications received / owed*: owed counts the posts wrk saw answered 201; the posts in
  flight when wrk stopped were stored and notified too, hence a few more received.
"""
