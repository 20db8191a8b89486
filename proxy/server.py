"""Running a proxy: serve every API version over the catalog's partitions until told to stop."""

from __future__ import annotations

import asyncio
import contextlib

import uvloop
from aiohttp import web

from ground.logs import configure, get_logger
from proxy.app import create_app
from proxy.front import ProxyRunner
from proxy.settings import ProxySettings

log = get_logger("proxy")


async def serve(settings: ProxySettings) -> None:
    app = create_app(settings)
    runner = ProxyRunner(
        app, access_log=None, handle_signals=True, shutdown_timeout=settings.drain_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
    await site.start()
    log.info(
        "proxy_started",
        url=f"http://{settings.host}:{settings.port}",
        catalog=settings.catalog_url,
        prefix=settings.key_prefix,
    )
    try:
        await asyncio.Event().wait()
    finally:
        # Stop accepting, drain in-flight requests (shutdown_timeout), then the app's
        # cleanup_ctx closes the client session, stops the cache and closes the store.
        await runner.cleanup()


def run(settings: ProxySettings) -> None:
    """Serve until SIGINT/SIGTERM (KeyboardInterrupt), on uvloop."""
    configure(settings.log_level, settings.log_json)
    # aiohttp turns SIGINT/SIGTERM into GracefulExit (a SystemExit with code 1) once the
    # shutdown sequence has run: a requested stop is a clean exit.
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        uvloop.run(serve(settings))


if __name__ == "__main__":
    run(ProxySettings.from_env())
