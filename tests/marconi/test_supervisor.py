"""Child processes under the supervisor: readiness, death, and stop order, with tiny Pythons."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from marconi.supervisor import ChildExited, Supervisor, listening, next_free_port, port_in_use
from tests.services import free_port

# Listens on argv[2]; on SIGTERM appends argv[1] to argv[3], then exits unless told "stubborn".
CHILD = """
import signal, socket, sys, time
name, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stubborn = len(sys.argv) > 4
def bye(*_):
    with open(record, "a") as f:
        f.write(name + "\\n")
    if not stubborn:
        sys.exit(0)
signal.signal(signal.SIGTERM, bye)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
print("listening", name, flush=True)
while True:
    time.sleep(0.05)
"""


def child(name: str, port: int, record: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", CHILD, name, str(port), str(record), *extra]


def test_ports() -> None:
    port = free_port()
    assert not port_in_use(port)
    assert next_free_port(port, set()) == port
    assert next_free_port(port, {port}) > port
    assert not listening(port)


def test_start_waits_for_the_port_and_stops_newest_first(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    record = tmp_path / "stopped"
    try:
        for name in ("etcd", "node", "proxy"):
            port = free_port()
            started = supervisor.start(name, child(name, port, record), port=port)
            assert listening(port)
            # Its own process group: a Ctrl-C at the terminal reaches only the supervisor.
            assert os.getpgid(started.pid) == started.pid
        supervisor.check()
    finally:
        supervisor.stop_all()
    assert record.read_text().split() == ["proxy", "node", "etcd"]
    assert all(c.proc.returncode is not None for c in supervisor.children)
    assert "listening proxy" in supervisor.children[-1].tail()


def test_a_child_dying_before_it_listens(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    argv = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    with pytest.raises(ChildExited) as caught:
        supervisor.start("node-p1", argv, port=free_port())
    assert "node-p1" in str(caught.value) and "code 3" in str(caught.value)
    assert caught.value.child.tail() == "bad config"


def test_watch_returns_the_child_that_exited(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    try:
        supervisor.start("steady", child("steady", port, tmp_path / "r"), port=port)
        short = supervisor.start("short", [sys.executable, "-c", "import time; time.sleep(0.3)"])
        assert supervisor.watch() is short
        with pytest.raises(ChildExited):
            supervisor.check()
    finally:
        supervisor.stop_all()


def test_a_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    port = free_port()
    record = tmp_path / "stopped"
    stubborn = supervisor.start("stubborn", child("s", port, record, "stubborn"), port=port)
    supervisor.stop_all(timeout=0.5)
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert record.read_text().split() == ["s"]  # it did get the SIGTERM first
