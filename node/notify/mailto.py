"""`mailto:` subscribers: one email per notification, through the node's SMTP server.

Sent with the standard library's `smtplib` on a worker thread: email is a side channel whose
volume is small next to webhooks, and a thread per send spares the node an SMTP client
dependency (Zaqar itself pipes each email to a `sendmail` process).

A subscription's confirmation request (`node.notify.confirm`) goes as Zaqar 23's confirmation
email (`zaqar/notification/tasks/mailto.py`): the template's topic, sender and body, the body's
link the confirmation page (`external_confirmation_url`) with the pre-signed request's parts as
its query. Without that page no email is sent (Zaqar logs the same error and sends none).
"""

from __future__ import annotations

import asyncio
import smtplib
from email.mime.text import MIMEText
from typing import Any

from ground.logs import get_logger
from node.notify.confirm import SUBSCRIPTION_CONFIRMATION
from node.notify.errors import DeliveryFailed
from node.notify.notices import mail, recipient
from node.notify.settings import NotifySettings
from node.storage.outbox import Delivery

log = get_logger("node.notify")


class MailtoSender:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        timeout: float,
        templates: NotifySettings | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout = timeout
        self._templates = templates or NotifySettings()

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        if notice.get("Message_Type") == SUBSCRIPTION_CONFIRMATION:
            message = confirmation_mail(notice, delivery, self._templates)
            if message is None:
                log.error("confirmation_email_without_page", delivery=delivery.id)
                return
        else:
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


def confirmation_link(page: str, notice: dict[str, Any], queue: str) -> str:
    """The confirmation page with the signed request's parts, in Zaqar's order and spelling
    (`Url` is Zaqar's public endpoint for the confirm path when Keystone's catalog has one;
    empty here)."""
    return (
        f"{page}?Signature={notice.get('URL-Signature', '')}"
        f"&Methods={notice.get('URL-Methods', '')}&Paths={notice.get('URL-Paths', '')}"
        f"&Project={notice.get('X-Project-ID', '')}&Expires={notice.get('URL-Expires', '')}"
        f"&Url={notice.get('WSGISubscribeURL', '')}&Queue={queue}"
    )


def confirmation_mail(
    notice: dict[str, Any], delivery: Delivery, templates: NotifySettings
) -> MIMEText | None:
    """Zaqar's confirmation email for `notice`; None without a confirmation page."""
    if not templates.external_confirmation_url:
        return None
    link = confirmation_link(templates.external_confirmation_url, notice, delivery.queue)
    try:
        body = templates.confirmation_email_body.format(
            delivery.queue, notice.get("X-Project-ID", ""), link
        )
    except (IndexError, KeyError, ValueError):  # a template with other braces: sent as it is
        body = templates.confirmation_email_body
    message = MIMEText(body)
    message["To"] = recipient(delivery.subscriber)
    message["From"] = templates.confirmation_email_sender
    message["Subject"] = templates.confirmation_email_topic
    return message
