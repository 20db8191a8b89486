"""The deliverer's lifecycle in a node process: started with the app, stopped before the
storage closes (aiohttp runs cleanup contexts in reverse order of registration)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from node.encryption import MessageCipher
from node.notify.deliverer import Deliverer, Sender
from node.notify.mailto import MailtoSender
from node.notify.settings import NotifySettings
from node.notify.trust import trust_senders
from node.notify.webhook import WebhookSender
from node.storage.base import Storage


def senders(settings: NotifySettings) -> dict[str, Sender]:
    """One sender per subscriber scheme Zaqar knows."""
    webhook = WebhookSender(settings.webhook_timeout)
    mailto = MailtoSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_sender,
        settings.smtp_timeout,
        settings,
    )
    return {"http": webhook, "https": webhook, "mailto": mailto, **trust_senders(settings, webhook)}


def delivery_lifecycle(
    storage: Storage,
    settings: NotifySettings,
    clock: Callable[[], float] = time.time,
    cipher: MessageCipher | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if not settings.enabled:
            yield
            return
        deliverer = Deliverer(
            storage.outbox,
            storage.queues,
            senders(settings),
            settings,
            clock,
            cipher,
            subscriptions=storage.subscriptions,
        )
        task = asyncio.create_task(deliverer.run())
        yield
        # Stop sending: what is in flight stays leased and is sent again by whoever takes
        # it after the lease expires (at least once).
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return lifecycle
