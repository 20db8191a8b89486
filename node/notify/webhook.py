"""Webhook subscribers: one HTTP POST per notification, as Zaqar sends it."""

from __future__ import annotations

from typing import Any

import aiohttp

from node.notify.errors import DeliveryFailed
from node.notify.notices import webhook_request
from node.storage.outbox import Delivery


class WebhookSender:
    """Posts notifications over one keep-alive connection pool. Zaqar counts any answer from
    200 to 499 as delivered (a 4xx will not get better by retrying) and retries the rest."""

    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data, headers = webhook_request(notice, delivery.options)
        try:
            async with self._session.post(
                delivery.subscriber, data=data.encode(), headers=headers
            ) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DeliveryFailed(f"webhook: {type(exc).__name__}") from exc
        if not 200 <= status < 500:
            raise DeliveryFailed(f"webhook answered {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
