"""The CLI against a fake admin API on a real 127.0.0.1 socket; commands run in a thread, since
the CLI's HTTP client is synchronous and the fake serves on the test's event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from marconi.cli import main
from tests.marconi.fake_admin import FakeAdmin


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], url: str) -> None:
        self.capsys = capsys
        self.url = url

    async def __call__(self, *argv: str, url: bool = True) -> Result:
        """Run `marconi ARGV --url <the fake>` (as the installed script would) and capture it."""
        args = [*argv, "--url", self.url] if url else list(argv)
        self.capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, args)
        except SystemExit as exc:  # argparse: usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
async def admin() -> AsyncIterator[tuple[FakeAdmin, str]]:
    fake = FakeAdmin()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
def fake(admin: tuple[FakeAdmin, str]) -> FakeAdmin:
    return admin[0]


@pytest.fixture
def cli(admin: tuple[FakeAdmin, str], capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, admin[1])
