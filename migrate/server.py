"""Running a migration worker (`marconi worker`): follow the catalog's migrations and carry them
out until told to stop; /metrics and /health on a small HTTP listener."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import uvloop
from aiohttp import web

from catalog.etcd import EtcdStore
from catalog.keys import Keys
from ground.logs import configure, get_logger
from ground.metrics import metrics_handler
from migrate.settings import WorkerSettings
from migrate.worker import Worker

log = get_logger("migrate")
WORKER = web.AppKey("worker", Worker)


async def health(request: web.Request) -> web.Response:
    """200 while the worker holds its lease (it may run migrations), 503 otherwise."""
    worker = request.app[WORKER]
    ok = worker.ownership.valid()
    body = {"worker": worker.name, "lease": ok, "running": sorted(worker.runners)}
    return web.json_response(body, status=200 if ok else 503)


async def _listen(worker: Worker, settings: WorkerSettings) -> web.AppRunner | None:
    if not settings.metrics_port:
        return None
    app = web.Application()
    app[WORKER] = worker
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
    try:
        await site.start()
    except OSError as exc:
        # A second worker on one host: it still works, without its own metrics.
        log.error("metrics_listen_failed", port=settings.metrics_port, error=str(exc))
        await runner.cleanup()
        return None
    return runner


async def _stopped() -> None:
    """Until SIGINT or SIGTERM: taken by the loop, so the stop starts between two callbacks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def serve(settings: WorkerSettings) -> None:
    store = EtcdStore(settings.catalog_url)
    worker = Worker(store, Keys(settings.key_prefix), settings)
    listener = await _listen(worker, settings)
    try:
        await worker.start()
        log.info(
            "worker_serving",
            catalog=settings.catalog_url,
            metrics=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        )
        await _stopped()
    finally:
        # Stop the runners and revoke the lease (another worker takes over at once), then stop
        # the listener and close the catalog connection.
        await worker.stop()
        if listener is not None:
            await listener.cleanup()
        await store.close()


def run(settings: WorkerSettings) -> None:
    """Run a worker until SIGINT/SIGTERM, on uvloop; `marconi worker` calls this."""
    configure(settings.log_level, settings.log_json)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))


if __name__ == "__main__":
    run(WorkerSettings.from_env())
