"""The workloads, and the one runner that drives any target with them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from bench import cpu
from bench.cluster import Target
from bench.wrk import WrkResult, run

QUEUE = "bench"
BENCH, MACHINE = "bench", "machine"  # CpuMeter's samples beside the roles
# The role of a PostgreSQL server the bench started (its postmaster and backends, found by name
# at each sample: a backend starts when a node first leases its connection).
DATABASE = "database"


@dataclass(frozen=True)
class Scenario:
    name: str
    lua: str  # bench/lua/{lua}.lua
    batch: int  # messages posted, listed or claimed per request

    def messages_per_s(self, result: WrkResult, seconds: float) -> float:
        """Messages posted, listed, or claimed (and then deleted one by one)."""
        if self.lua == "consume":
            return result.extra.get("CLAIMED", 0) / seconds
        return result.requests_per_s * self.batch


POST_1 = Scenario("post 1 message", "post", 1)
POST_10 = Scenario("post 10 messages", "post", 10)
LIST_10 = Scenario("list 10 messages", "list", 10)
CONSUME_10 = Scenario("claim 10 + delete each", "consume", 10)
NODE_SCENARIOS = (POST_1, POST_10, LIST_10, CONSUME_10)


@dataclass(frozen=True)
class Load:
    seconds: int
    connections: int
    threads: int


@dataclass(frozen=True)
class Measurement:
    target: str
    scenario: Scenario
    load: Load
    result: WrkResult
    cpu_seconds: Mapping[str, float]  # by role ("wrk", "nodes", "proxy"), while wrk ran
    background_cores: float  # CPU used meanwhile by processes outside the bench, in cores

    @property
    def messages_per_s(self) -> float:
        return self.scenario.messages_per_s(self.result, self.load.seconds)

    def cpu_us_per_request(self, role: str | None = None) -> float | None:
        """CPU time per completed request of one role's processes, or of all (None)."""
        if (role is not None and role not in self.cpu_seconds) or not self.result.requests:
            return None
        used = sum(self.cpu_seconds.values()) if role is None else self.cpu_seconds[role]
        return used / self.result.requests * 1e6

    def line(self) -> str:
        r = self.result
        return (
            f"   {self.target}, {self.scenario.name}, -c{self.load.connections}: "
            f"{r.requests_per_s:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
            f"errors {r.errors}, background {self.background_cores:.2f} cores"
        )


def warm_up(target: Target) -> None:
    """Creates the queue (placing it, through the proxy) and fills caches."""
    run(target.url, "post", seconds=2, connections=8, threads=1, env={"QUEUE": QUEUE})


class CpuMeter:
    """CPU time used while wrk runs: by each role of a target, by wrk, and by processes outside
    the bench (not this process nor any it started: nodes, proxy, etcd, FerretDB, wrk)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.family = cpu.descendants()
        self.before = self._sample()
        self.started = time.perf_counter()

    def _sample(self) -> dict[str, float]:
        sample = {role: cpu.total(pids) for role, pids in self.target.pids.items()}
        if database := cpu.named(cpu.descendants(), "postgres"):
            sample[DATABASE] = cpu.total(database)
        sample["wrk"] = cpu.waited_children()
        sample[BENCH] = cpu.own() + cpu.total(self.family)
        sample[MACHINE] = cpu.machine_busy()
        return sample

    def stop(self) -> tuple[dict[str, float], float]:
        """CPU seconds by role, and how many cores other processes kept busy meanwhile."""
        elapsed = time.perf_counter() - self.started
        after = self._sample()
        used = {role: after.get(role, 0.0) - before for role, before in self.before.items()}
        others = used.pop(MACHINE) - used.pop(BENCH) - used["wrk"]
        return used, max(others, 0.0) / elapsed


def measure(target: Target, scenario: Scenario, load: Load) -> Measurement:
    """Drive `target` with `scenario`, metering the CPU time of its processes and of others."""
    meter = CpuMeter(target)
    result, _ = run(
        target.url,
        scenario.lua,
        seconds=load.seconds,
        connections=load.connections,
        threads=load.threads,
        env={"QUEUE": QUEUE, "BATCH": str(scenario.batch)},
    )
    used, others = meter.stop()
    measurement = Measurement(target.name, scenario, load, result, used, others)
    print(measurement.line(), flush=True)
    return measurement
