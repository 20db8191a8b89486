"""`ground.workers` with real processes: a tiny server (tests/ground/worker_app.py) run by N
workers on one port, driven over TCP and by signals as an operator or Kubernetes would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent.parent


def start(port: int, workers: int, drain: float = 5.0) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.ground.worker_app", str(port), str(workers), str(drain)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def served() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = start(port, 2)
    try:
        wait_for_port(port, proc)
        wait_for(lambda: len(children(proc.pid)) == 2)
        yield port, proc
    finally:
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        stop(proc)
        assert proc.stderr is not None
        proc.stderr.close()


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is gone too


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def ask(port: int, line: bytes = b"pid\n") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(line)
        return int(conn.makefile("rb").readline())


def test_the_workers_share_the_port(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = served
    workers = children(proc.pid)
    answered = {ask(port) for _ in range(60)}
    # The kernel spreads new connections over both (60 on one alone: a chance of 2**-59).
    assert answered == workers


def test_a_worker_that_dies_is_replaced(served: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, proc = served
    first, second = sorted(children(proc.pid))
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(children(proc.pid) - {first}) == 2)
    replacement = (children(proc.pid) - {first, second}).pop()
    wait_for(lambda: {ask(port) for _ in range(30)} == {second, replacement})
    assert proc.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_every_worker_and_exits_0(
    served: tuple[int, subprocess.Popen[bytes]], signum: signal.Signals
) -> None:
    port, proc = served
    workers = children(proc.pid)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    with held:
        held.sendall(b"hold\n")
        time.sleep(0.2)  # taken by a worker (the answer below proves it was)
        proc.send_signal(signum)
        time.sleep(0.5)
        assert proc.poll() is None  # waiting for the request in flight
        held.sendall(b"go\n")
        assert int(held.makefile("rb").readline()) in workers
    assert proc.wait(10) == 0
    assert not any(alive(pid) for pid in workers)


def test_a_worker_that_cannot_start_stops_them_all_with_status_1() -> None:
    with socket.socket() as taken:  # no SO_REUSEPORT: no worker can bind beside it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = start(taken.getsockname()[1], 2)
        try:
            assert proc.wait(20) == 1
        finally:
            stop(proc)
            assert proc.stderr is not None
            errors = proc.stderr.read().decode()
            proc.stderr.close()
    assert "address already in use" in errors and "worker_failed_to_start" in errors


def test_workers_die_with_a_killed_supervisor(
    served: tuple[int, subprocess.Popen[bytes]],
) -> None:
    _, proc = served
    workers = children(proc.pid)
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers))


def test_one_worker_is_this_very_process() -> None:
    port = free_port()
    proc = start(port, 1)
    try:
        wait_for_port(port, proc)
        assert ask(port) == proc.pid and children(proc.pid) == set()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        stop(proc)
        assert proc.stderr is not None
        proc.stderr.close()
