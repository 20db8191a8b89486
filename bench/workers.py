"""`--workers 2` against one worker: the node's and the proxy's throughput on one port.

Node: two `marconi node` servers over fresh SQLite partitions of their own, one with `--workers
1`, one with `--workers 2`, driven directly. Proxy: two `marconi proxy` servers, `--workers 1`
and `--workers 2`, over one catalog in a real etcd, in front of one node of `--workers 2` (the
same node for both, so only the proxy changes). Each scenario runs against one worker, then two,
back to back, so a change in the machine's background load falls on both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import cpu
from bench.cluster import (
    PARTITION,
    Target,
    listening,
    register,
    storage,
    wait_for_ping,
)
from bench.scenarios import LIST_10, POST_1, Load, Measurement, measure, warm_up
from catalog.records import Partition
from tests.services import etcd, free_port, stop

COUNTS = (1, 2)


@dataclass(frozen=True)
class WorkerPair:
    """One scenario against one server, with one worker then with two."""

    server: str  # "node" or "proxy"
    one: Measurement
    two: Measurement

    @property
    def ratio(self) -> float:
        return self.two.result.requests_per_s / max(self.one.result.requests_per_s, 1e-9)


@dataclass(frozen=True)
class Served:
    url: str
    pids: tuple[int, ...]  # the supervisor and its workers, or the one process
    proc: subprocess.Popen[bytes]


def _all_listening(proc: subprocess.Popen[bytes], port: int, workers: int) -> tuple[int, ...]:
    """The processes serving: the one process, or the supervisor and its `workers` workers once
    each of them listens on `port` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        serving = {proc.pid} if workers == 1 else cpu.descendants(proc.pid)
        if len(serving) == workers and all(listening(pid, port) for pid in serving):
            return (proc.pid, *sorted(serving - {proc.pid}))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} worker(s) of {proc.pid} not listening on {port}")
        time.sleep(0.05)


@contextlib.contextmanager
def served(args: list[str], workers: int, log_path: Path) -> Iterator[Served]:
    """`marconi ARGS --workers N` on a free port until the block ends."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "marconi.cli", *args, "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", str(workers), "--log-level", "warning", "--log-json"),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            pids = _all_listening(proc, port, workers)
            yield Served(f"http://127.0.0.1:{port}", pids, proc)
        finally:
            stop(proc)


def _pairs(server: str, targets: tuple[Target, Target], load: Load) -> list[WorkerPair]:
    for target in targets:
        warm_up(target)
    return [
        WorkerPair(server, *(measure(target, s, load) for target in targets))
        for s in (POST_1, LIST_10)
    ]


def nodes(base: Path, load: Load) -> list[WorkerPair]:
    base.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        targets = []
        for count in COUNTS:
            data = base / f"node-{count}"
            uri = stack.enter_context(storage("sqlite", data))
            node = stack.enter_context(served(["node", "--storage", uri], count, data / "n.log"))
            targets.append(Target(f"node, {count} worker(s)", node.url, {"nodes": node.pids}))
        print(f"== node: 1 worker at {targets[0].url}, 2 at {targets[1].url}", flush=True)
        return _pairs("node", (targets[0], targets[1]), load)


def proxies(base: Path, load: Load) -> list[WorkerPair]:
    base.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        catalog = stack.enter_context(etcd(base / "etcd"))
        uri = stack.enter_context(storage("sqlite", base / "node"))
        node = stack.enter_context(served(["node", "--storage", uri], 2, base / "node.log"))
        asyncio.run(register(catalog.url, Partition(PARTITION, nodes=(node.url,))))
        targets = []
        for count in COUNTS:
            args = ["proxy", "--catalog", catalog.url]
            proxy = stack.enter_context(served(args, count, base / f"proxy-{count}.log"))
            wait_for_ping(proxy.url, proxy.proc)
            roles = {"nodes": node.pids, "proxy": proxy.pids}
            targets.append(Target(f"proxy, {count} worker(s)", proxy.url, roles))
        print(f"== proxy: 1 worker at {targets[0].url}, 2 at {targets[1].url}", flush=True)
        return _pairs("proxy", (targets[0], targets[1]), load)


def measure_workers(base: Path, load: Load) -> list[WorkerPair]:
    return nodes(base / "nodes", load) + proxies(base / "proxies", load)
