"""Running a proxy: serve every API version over the catalog's partitions until told to stop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import uvloop
from aiohttp import web

from ground.logs import configure, get_logger
from ground.stops import stop_signals
from ground.workers import run_workers
from proxy.app import create_app
from proxy.front import ProxyRunner
from proxy.settings import ProxySettings

log = get_logger("proxy")


async def serve(settings: ProxySettings, ready: Callable[[], None] = lambda: None) -> None:
    async with stop_signals() as stop:
        app = create_app(settings)
        runner = ProxyRunner(
            app,
            deadlines=settings.deadlines,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=settings.drain_timeout,
        )
        await runner.setup()
        try:
            # SO_REUSEPORT: the workers of `--workers N` each bind the port (ground/workers.py).
            site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
            await site.start()
            log.info(
                "proxy_started",
                url=f"http://{settings.host}:{settings.port}",
                catalog=settings.catalog_url,
                prefix=settings.key_prefix,
            )
            ready()
            await stop.wait()
            log.info("proxy_stopping", drain_timeout=settings.drain_timeout)
        finally:
            # Stop accepting, drain in-flight requests (shutdown_timeout), then the app's
            # cleanup_ctx closes the client session, stops the cache and closes the store.
            await runner.cleanup()


def run(settings: ProxySettings) -> int:
    """Serve until SIGTERM/SIGINT, on uvloop, with `settings.workers` processes; the exit status."""
    configure(settings.log_level, settings.log_json)

    def serve_one(ready: Callable[[], None]) -> None:
        with contextlib.suppress(KeyboardInterrupt):  # a stop before the loop took the signals
            uvloop.run(serve(settings, ready))

    return run_workers(settings.workers, serve_one, settings.drain_timeout)


if __name__ == "__main__":
    raise SystemExit(run(ProxySettings.from_env()))
