"""The CLI against a fake admin API on a real 127.0.0.1 socket; commands run in a thread, since
the CLI's HTTP client is synchronous and the fake serves on the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer

from marconi.cli import main
from tests.conftest import FakeClock
from tests.marconi.fake_admin import FakeAdmin
from tests.migrate.fake_worker import work
from tests.proxy.cluster import Cluster, cluster
from tests.proxy.conftest import PROJECT, call


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


# --- a real admin API, for the migration commands ------------------------------------------------


@pytest.fixture
async def live(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cluster]:
    """A real proxy over the in-memory catalog: three partitions with storage URIs (migrations
    need them), every new queue of the test project pinned to p1. No worker runs unless a test
    starts `tests.migrate.fake_worker.work`. The proxy's logs are kept off the CLI's stdout."""
    with structlog.testing.capture_logs():
        async with cluster(tmp_path, clock, partitions=("p1", "p2", "p3")) as made:
            yield await _prepared(made, tmp_path)


async def _prepared(made: Cluster, tmp_path: Path) -> Cluster:
    for name in made.partitions:
        await made.catalog.update_partition(name, storage=f"sqlite:///{tmp_path}/{name}.db")
    await made.catalog.pin(PROJECT, "p1")
    cache = made.state().router.cache
    while PROJECT not in cache.pins:
        await cache.changed.wait()
    return made


@pytest.fixture
def live_cli(live: Cluster, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, str(live.proxy.make_url("")).rstrip("/"))


async def make_queues(c: Cluster, *names: str) -> None:
    for name in names:
        status, _, _ = await call(c.proxy, "PUT", f"/v2/queues/{name}")
        assert status == 201


async def owner(c: Cluster, queue: str) -> str:
    placement = await c.catalog.placement(PROJECT, queue)
    assert placement is not None
    return placement.partition


@contextlib.asynccontextmanager
async def worker(c: Cluster, **options: Any) -> AsyncIterator[None]:
    """The stand-in migration worker, running for the block."""
    task = asyncio.create_task(work(c.catalog, **options))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
