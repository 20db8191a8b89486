"""CPU time (user + system, in seconds) used by processes and by the whole machine, from /proc."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterable
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Fields after the command name (which may hold spaces and parentheses): state is field 3 of
# proc(5), utime field 14 and stime field 15.
UTIME, STIME = 14 - 3, 15 - 3


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[UTIME]) + int(fields[STIME])) / TICKS_PER_SECOND


def total(pids: Iterable[int]) -> float:
    """CPU time of those of `pids` still running when read: one may end after it was listed
    (a database server's backend whose connection closed)."""
    seconds = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            seconds += cpu_seconds(pid)
    return seconds


def waited_children() -> float:
    """CPU time of this process's children that have ended and been waited for (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own() -> float:
    """CPU time of this process (the bench itself)."""
    times = os.times()
    return times.user + times.system


def machine_busy() -> float:
    """CPU time the whole machine spent busy (every state but idle and iowait), all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / TICKS_PER_SECOND


def descendants(root: int | None = None) -> set[int]:
    """The processes started, directly or not, by `root` (this process by default)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def named(pids: Iterable[int], name: str) -> list[int]:
    """Those of `pids` whose command is `name` (a PostgreSQL server's processes: `postgres`)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
    return found
