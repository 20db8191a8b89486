"""Real subscribers for the tests: an HTTP receiver and an SMTP server (PyPI `aiosmtpd`), both
on 127.0.0.1, recording what they are sent."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Hit:
    path: str
    body: bytes
    headers: dict[str, str]
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An aiohttp server answering every POST with 204, or with `failing` statuses first."""

    hits: list[Hit] = field(default_factory=list)
    failing: list[int] = field(default_factory=list)  # statuses to answer first, in order
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.failing:
            return web.Response(status=self.failing.pop(0))
        self.hits.append(Hit(request.path, body, dict(request.headers), time.time()))
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Mailbox:
    """An SMTP server (aiosmtpd) on a thread of its own, keeping every email it accepts."""

    mails: list[tuple[str, list[str], Message]] = field(default_factory=list)
    port: int = 0
    _controller: Controller | None = None

    def start(self) -> Mailbox:
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.mails.append(
            (str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(content))
        )
        return "250 OK"

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `check()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
