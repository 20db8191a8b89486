"""Running a node: open the partition's storage, serve the API until told to stop."""

from __future__ import annotations

import asyncio
import contextlib

import uvloop
from aiohttp import web

from ground.logs import configure, get_logger
from node.api.app import create_app
from node.api.deps import Deps
from node.settings import NodeSettings
from node.storage import open_storage

log = get_logger("node")


async def serve(settings: NodeSettings) -> None:
    storage = await open_storage(settings.storage)
    deps = Deps(storage=storage, limits=settings.limits, partition=settings.partition)
    app = create_app(deps, gc_interval=settings.gc_interval)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
    await site.start()
    log.info(
        "node_started",
        partition=settings.partition,
        url=f"http://{settings.host}:{settings.port}",
        storage=settings.storage.split("@")[-1],
    )
    try:
        await asyncio.Event().wait()
    finally:
        # Stop accepting, give in-flight requests a moment, then cleanup_ctx closes the storage.
        await runner.cleanup()


def run(settings: NodeSettings) -> None:
    configure(settings.log_level, settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
