"""Webhook subscribers: one HTTP POST per notification, as Zaqar sends it."""

from __future__ import annotations

from typing import Any

from node.notify.errors import DeliveryFailed
from node.notify.http import HttpClient, HttpError
from node.notify.notices import webhook_request
from node.storage.outbox import Delivery


class WebhookSender:
    """Posts notifications over keep-alive connections (`node.notify.http`). Zaqar counts any
    answer from 200 to 499 as delivered (a 4xx will not get better by retrying) and retries
    the rest."""

    def __init__(self, timeout: float) -> None:
        self._client = HttpClient(timeout)  # which bounds the wait for each answer

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        data, headers = webhook_request(notice, delivery.options)
        try:
            status = await self._client.post(delivery.subscriber, data.encode(), headers)
        except HttpError as exc:
            raise DeliveryFailed(f"webhook: {exc}") from exc
        if not 200 <= status < 500:
            raise DeliveryFailed(f"webhook answered {status}")

    async def close(self) -> None:
        await self._client.close()
