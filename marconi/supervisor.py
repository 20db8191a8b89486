"""Child processes of `marconi dev`: started in order, watched, stopped by process id in reverse.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only the
supervisor, which then stops the children one by one, newest first (the proxy before the nodes,
the nodes before etcd). Their output goes to one log file each. Each child is also told by the
kernel (SIGTERM) when the supervisor dies, however it dies: a SIGKILLed `marconi dev` leaves
nothing behind.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ground.workers import die_with_parent

POLL_SECONDS = 0.1
# A child's drain time (10 s by default) and its close: what a stopping server may take before
# SIGKILL; a supervisor of workers gives them 5 s more than the drain time, and so does this.
STOP_SECONDS = 20.0


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something holds `port`; connections lingering in TIME_WAIT do not count, as the
    servers started here bind with SO_REUSEADDR too."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


def next_free_port(start: int, taken: set[int], host: str = "127.0.0.1") -> int:
    """The first port from `start` up that nothing listens on and `taken` does not hold."""
    port = start
    while port in taken or port_in_use(port, host):
        port += 1
        if port > 65535:
            raise OSError(f"no free port from {start} up")
    return port


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        """The last lines the child wrote, to explain why it died."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ChildExited(Exception):
    """A child ended while the supervisor still needed it."""

    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} (pid {child.pid}) exited with code {child.proc.returncode}")
        self.child = child


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        port: int | None = None,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start `argv`; with `port`, return only once it listens there (or raise ChildExited)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
                preexec_fn=die_with_parent,  # no threads here: the fork-then-exec is safe
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        if port is not None:
            self.wait_for_port(child, port, timeout)
        return child

    def wait_for_port(self, child: Child, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not listening(port):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} does not listen on port {port} after {timeout}s")
            time.sleep(POLL_SECONDS)

    def check(self) -> None:
        """Raise ChildExited for the first child that is no longer running."""
        for child in self.children:
            if child.proc.poll() is not None:
                raise ChildExited(child)

    def watch(self) -> Child:
        """Block until some child exits (a Ctrl-C interrupts it); return that child."""
        while True:
            for child in self.children:
                if child.proc.poll() is not None:
                    return child
            time.sleep(POLL_SECONDS)

    def stop_all(self, timeout: float = STOP_SECONDS) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after `timeout` seconds.

        Another Ctrl-C while this runs stops waiting: the rest are killed at once.
        """
        hurry = False
        for child in reversed(self.children):
            force = hurry
            while child.proc.poll() is None:
                try:
                    if force:
                        child.proc.kill()
                    else:
                        child.proc.terminate()
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    force = True
                except KeyboardInterrupt:
                    hurry = force = True
