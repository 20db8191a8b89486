"""The deliverer in a process of its own: a child of each node process, which it supervises.

    node process                                       deliverer process (`-m node.notify.process`)
      a post owes deliveries ── a byte on its stdin, ──▶ wakes the deliverer (`OutboxStore.wait`)
                                at most one per `gather`
      /metrics   ◀── the deliverer's series as totals, ── one JSON line a second on its stdout
      the node stops ── SIGTERM ──────────────────────▶ stops sending, settles what was sent
      the child dies ──▶ another is started, after a backoff (0.5 s doubling to 30 s) while
                         they die young
      the node dies, even by kill -9 ──▶ the child's stdin closes, and the kernel sends it
                                        SIGTERM (`die_with_parent`)

A post and a delivery then never share an event loop: each process has a core's worth of time
to itself, and a post pays one flag test (and, now and then, one write of a byte) for its
deliveries. The child opens the partition's storage itself and takes deliveries by lease, as
any deliverer of the partition does, so nothing changes for at-least-once: a child killed
mid-send leaves its leases to expire and the next holder sends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable

import uvloop
from aiohttp import web

from ground.logs import configure, get_logger
from ground.workers import die_with_parent
from node.encryption import MessageCipher
from node.notify.deliverer import Deliverer
from node.notify.metrics import Relay, snapshot
from node.notify.service import senders
from node.notify.settings import NotifySettings
from node.storage import open_storage
from node.storage.outbox import Nudge

log = get_logger("node.notify")
REPORT_INTERVAL = 1.0  # seconds between the child's metric reports
STOP_GRACE = 10.0  # seconds a stopping child gets before it is killed
YOUNG = 10.0  # a child that dies younger than this is restarted after a growing backoff
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STORAGE = "MARCONI_NOTIFY_CHILD_STORAGE"
KEY = "MARCONI_NOTIFY_CHILD_ENCRYPTION_KEY"


def separable(storage: str) -> bool:
    """Whether another process can open the same storage (not an in-memory SQLite one)."""
    return ":memory:" not in storage and storage.rstrip("/") != "sqlite:"


def child_environment(
    storage: str, settings: NotifySettings, key: str, log_level: str, log_json: bool | None
) -> dict[str, str]:
    """The child's environment: the node's, with its storage, key and settings spelled out
    (the node may have had them from flags rather than from the environment)."""
    environ = dict(os.environ)
    for field in dataclasses.fields(settings):
        environ[f"MARCONI_NOTIFY_{field.name.upper()}"] = str(getattr(settings, field.name))
    environ.update({STORAGE: storage, KEY: key, "MARCONI_LOG_LEVEL": log_level})
    if log_json is not None:
        environ["MARCONI_LOG_JSON"] = str(log_json)
    return environ


class Child:
    """The node's side: starts the deliverer process, restarts it, passes posts' nudges on and
    its metrics in, and stops it."""

    def __init__(self, environ: dict[str, str], nudge: Nudge, gather: float) -> None:
        self.environ = environ
        self.gather = gather
        self.relay = Relay()
        self.proc: asyncio.subprocess.Process | None = None
        self._nudged = 0.0
        nudge.listener = self.nudge

    def nudge(self) -> None:
        """A post of this process owes deliveries: wake the child, at most once per `gather`
        (its deliverer waits that long for more before it leases anyway)."""
        proc = self.proc
        now = time.monotonic()
        if proc is None or proc.stdin is None or now - self._nudged < self.gather:
            return
        self._nudged = now
        with contextlib.suppress(OSError, RuntimeError):  # a child that just died: no matter
            proc.stdin.write(b".")

    async def supervise(self) -> None:
        """Keep a child running until cancelled; then stop it."""
        young_deaths = 0
        try:
            while True:
                started = time.monotonic()
                code = await self._run_one()
                young_deaths = young_deaths + 1 if time.monotonic() - started < YOUNG else 0
                backoff = BACKOFF_FIRST * 2 ** (young_deaths - 1) if young_deaths else 0.0
                log.error("deliverer_exited", code=code, restart_in=min(backoff, BACKOFF_MAX))
                await asyncio.sleep(min(backoff, BACKOFF_MAX))
        finally:
            await self._stop()

    async def _run_one(self) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "node.notify.process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.environ,
            preexec_fn=die_with_parent,
        )
        self.relay.restart()
        log.info("deliverer_started", pid=self.proc.pid)
        await self._read_reports(self.proc)
        return await self.proc.wait()

    async def _read_reports(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError, TypeError):
                self.relay.apply([(n, tuple(map(tuple, ls)), v) for n, ls, v in json.loads(line)])

    async def _stop(self) -> None:
        """SIGTERM, and SIGKILL after `STOP_GRACE`: what it holds is sent again by whoever
        takes it once its leases expire."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE):
                await self._read_reports(proc)  # its last report, then EOF
                await proc.wait()
        except TimeoutError:
            log.error("deliverer_killed", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def delivery_process(
    storage: str,
    settings: NotifySettings,
    nudge: Nudge,
    *,
    key: str = "",
    log_level: str = "info",
    log_json: bool | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The node's cleanup context that runs its deliverer as a child process."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        environ = child_environment(storage, settings, key, log_level, log_json)
        child = Child(environ, nudge, settings.gather)
        task = asyncio.create_task(child.supervise())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifecycle


async def _deliver() -> None:
    """The child: deliver until SIGTERM or until the node's end of stdin closes."""
    settings = NotifySettings.from_env()
    storage = await open_storage(os.environ[STORAGE])
    key = os.environ.get(KEY, "")
    cipher = MessageCipher(key) if key else None
    deliverer = Deliverer(
        storage.outbox,
        storage.queues,
        senders(settings),
        settings,
        cipher=cipher,
        subscriptions=storage.subscriptions,
    )
    loop = asyncio.get_running_loop()
    nudges = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(nudges), sys.stdin)

    async def listen(stop: asyncio.Event) -> None:
        while await nudges.read(4096):
            storage.outbox.written.set()
        stop.set()  # the node is gone

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            _report()

    # SIGTERM stops it. A Ctrl-C reaches the node's whole process group, this child included:
    # the node stops it in its own order, rather than see it die and start another meanwhile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        asyncio.create_task(deliverer.run()),
        asyncio.create_task(listen(stop)),
        asyncio.create_task(report()),
    ]
    try:
        await stop.wait()
    finally:
        # Stop sending (the deliverer settles what it sent), report once more, close.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _report()
        await storage.close()


def _report() -> None:
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(snapshot()) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    configure(
        os.environ.get("MARCONI_LOG_LEVEL", "info"),
        {"True": True, "False": False}.get(os.environ.get("MARCONI_LOG_JSON", "")),
    )
    uvloop.run(_deliver())
