"""Running wrk with a Lua scenario and reading its report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua"


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    extra: dict[str, int]


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latencies = dict(
        (pct, _ms(value, unit))
        for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    )
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    extra = {k: int(v) for k, v in re.findall(r"\b([A-Z_]+) (\d+)", output)}
    return WrkResult(rps, latencies.get("50", 0.0), latencies.get("99", 0.0), total, errors, extra)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found: `make bench` installs it (apt-get install wrk)")
    return path


def run(
    url: str,
    scenario: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    env: dict[str, str] | None = None,
) -> tuple[WrkResult, str]:
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(LUA / f"{scenario}.lua"),
        url,
    ]
    full_env = {**os.environ, "BENCH_LUA": str(LUA), **(env or {})}
    out = subprocess.run(command, capture_output=True, text=True, env=full_env, check=True).stdout
    return parse(out), out
