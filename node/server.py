"""Running a node: open the partition's storage, serve the API until told to stop."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import uvloop
from aiohttp import web

from ground.logs import configure, get_logger
from ground.stops import stop_signals
from ground.workers import run_workers
from node.api.app import create_app
from node.api.deps import Deps
from node.drain import AFTER_DRAIN, Drain
from node.encryption import MessageCipher
from node.notify.confirm import confirmation_signer
from node.notify.process import delivery_process, separable
from node.settings import NodeSettings
from node.storage import open_storage
from wire.deadlines import guarded_runner

log = get_logger("node")


async def serve(settings: NodeSettings, ready: Callable[[], None] = lambda: None) -> None:
    async with stop_signals() as stop:
        storage = await open_storage(settings.storage)
        key = settings.message_encryption_key
        signed_url_key = settings.signed_url_key or None
        deps = Deps(
            storage=storage,
            limits=settings.limits,
            partition=settings.partition,
            signed_url_key=signed_url_key,
            cipher=MessageCipher(key) if key else None,
            confirmations=confirmation_signer(signed_url_key)
            if settings.notify.require_confirmation
            else None,
        )
        notify = settings.notify
        # The deliverer runs in a child process unless told otherwise or the storage is in this
        # process's memory; with `--workers N`, every worker has its own.
        child = notify.enabled and notify.process and separable(settings.storage)
        app = create_app(
            deps, gc_interval=settings.gc_interval, notify=None if child else settings.notify
        )
        if child:
            app.cleanup_ctx.append(
                delivery_process(
                    settings.storage,
                    notify,
                    storage.outbox.written,
                    key=settings.message_encryption_key,
                    log_level=settings.log_level,
                    log_json=settings.log_json,
                )
            )
        drain = Drain()
        app.middlewares.insert(0, drain.middleware)
        runner = guarded_runner(settings.deadlines)(
            app, access_log=None, handle_signals=False, shutdown_timeout=AFTER_DRAIN
        )
        await runner.setup()
        try:
            # SO_REUSEPORT: the workers of `--workers N` each bind the port (ground/workers.py).
            site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
            await site.start()
            log.info(
                "node_started",
                partition=settings.partition,
                url=f"http://{settings.host}:{settings.port}",
                storage=settings.storage.split("@")[-1],
            )
            ready()
            await stop.wait()
            log.info("node_stopping", in_flight=len(drain.busy))
        finally:
            # Stop accepting, close idle keep-alive connections, give the requests in flight
            # `drain_timeout` seconds to be answered; then cleanup_ctx closes the storage.
            await drain.stop(runner, settings.drain_timeout)


def run(settings: NodeSettings) -> int:
    """Serve until SIGTERM/SIGINT, on uvloop, with `settings.workers` processes; the exit status."""
    configure(settings.log_level, settings.log_json)

    def serve_one(ready: Callable[[], None]) -> None:
        with contextlib.suppress(KeyboardInterrupt):  # a stop before the loop took the signals
            uvloop.run(serve(settings, ready))

    return run_workers(settings.workers, serve_one, settings.drain_timeout)
