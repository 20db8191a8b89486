"""Real servers for tests: started on 127.0.0.1 with free ports, stopped by their process id."""

from __future__ import annotations

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
def ferretdb(data_dir: Path) -> Iterator[str]:
    """A FerretDB on SQLite speaking the MongoDB wire protocol; yields its mongodb:// URL."""
    binary = ferretdb_binary()
    if binary is None:
        raise RuntimeError("FerretDB not found: run `make ferretdb` or set FERRETDB_BIN")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(data_dir / "ferretdb.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            binary,
            "--handler=sqlite",
            f"--sqlite-url=file:{data_dir}/",
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


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]


@contextmanager
def node_process(
    storage: str, partition: str = "p1", log_dir: Path | None = None
) -> Iterator[Process]:
    """A `marconi node` in its own process, stopped (or found killed) on exit."""
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
