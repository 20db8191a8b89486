"""`mailto:` subscribers: one email per notification, through the node's SMTP server.

Sent with the standard library's `smtplib` on a worker thread: email is a side channel whose
volume is small next to webhooks, and a thread per send spares the node an SMTP client
dependency (Zaqar itself pipes each email to a `sendmail` process).
"""

from __future__ import annotations

import asyncio
import smtplib
from email.mime.text import MIMEText
from typing import Any

from node.notify.errors import DeliveryFailed
from node.notify.notices import mail, recipient
from node.storage.outbox import Delivery


class MailtoSender:
    def __init__(self, host: str, port: int, sender: str, timeout: float) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout = timeout

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        message = mail(notice, delivery.subscriber, delivery.options, self._sender)
        try:
            await asyncio.to_thread(self._send, message, recipient(delivery.subscriber))
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"smtp: {type(exc).__name__}: {exc}") from exc

    def _send(self, message: MIMEText, to: str) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            smtp.send_message(message, from_addr=self._sender, to_addrs=[to])

    async def close(self) -> None:
        pass
