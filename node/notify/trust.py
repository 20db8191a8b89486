"""`trust+http://` and `trust+https://` subscribers: webhooks that are sent a Keystone token.

As Zaqar 23 (`zaqar/notification/tasks/trust.py`, `zaqar/common/auth.py`): when the
subscription is made, a Keystone trust is created from the caller's token, delegating the
caller's roles on its project to the trustee user (impersonation, expiring with the
subscription's ttl), and its id kept in the subscription's options as `trust_id`. Each
notification is then posted to the URL without its `trust+` prefix, with a token scoped to that
trust (got by the trustee's password) in `X-Auth-Token`, so the receiver may act as the
subscriber's owner within its project.

Here the proxy makes the trust under `--auth keystone` (it alone sees tokens; `proxy.trusts`),
and the nodes hold the trustee's password and get the tokens. A node asks Keystone for one
token per trust and keeps it until shortly before it expires. A subscription made without a
trust (under `--auth noauth` nobody makes one) and without a `trust_id` of the client's own is
refused (400) rather than stored to fail at every post, where Zaqar answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import aiohttp

from ground.logs import get_logger
from node.notify.errors import DeliveryFailed
from node.notify.settings import NotifySettings
from node.storage.outbox import Delivery
from wire.errors import ApiError

log = get_logger("node.notify")
PREFIX = "trust+"
SCHEMES = ("trust+http", "trust+https")
RENEW_BEFORE = 60.0  # seconds before its expiry a trust's token is asked for again
TOKENS_KEPT = 10_000  # trusts whose token a node keeps, at most
NO_TRUST = (
    "A trust+ subscriber is sent a token of a Keystone trust: under --auth keystone the proxy "
    "makes one from the request's token; otherwise give options.trust_id, a trust to the "
    "deployment's trustee user."
)


def check_subscription(subscriber: str, options: Mapping[str, Any]) -> None:
    """A `trust+` subscriber needs its trust (`options.trust_id`) to be worth storing."""
    if subscriber.startswith(PREFIX):
        trust_id = options.get("trust_id")
        if not isinstance(trust_id, str) or not trust_id:
            raise ApiError(NO_TRUST)


class TrustTokens:
    """Tokens scoped to trusts, for the trustee user, asked of Keystone and kept."""

    def __init__(self, settings: NotifySettings, clock: Callable[[], float] = time.time) -> None:
        base = settings.keystone_url.rstrip("/")
        self._url = (base if base.endswith("/v3") else base + "/v3") + "/auth/tokens"
        self._user = {
            "name": settings.trustee_username,
            "domain": {"name": settings.trustee_user_domain},
            "password": settings.trustee_password,
        }
        self._timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock
        self._kept: OrderedDict[str, tuple[str, float]] = OrderedDict()  # -> token, renew at
        self._asking: dict[str, asyncio.Lock] = {}

    async def token(self, trust_id: str) -> str:
        """A token scoped to `trust_id`. Raises `DeliveryFailed` when Keystone gives none."""
        kept = self._kept.get(trust_id)
        if kept is not None and kept[1] > self._clock():
            return kept[0]
        lock = self._asking.setdefault(trust_id, asyncio.Lock())
        async with lock:  # one question per trust, whatever the deliveries waiting for it
            kept = self._kept.get(trust_id)
            if kept is None or kept[1] <= self._clock():
                kept = await self._ask(trust_id)
                self._kept[trust_id] = kept
                self._kept.move_to_end(trust_id)
                while len(self._kept) > TOKENS_KEPT:
                    self._kept.popitem(last=False)
        self._asking.pop(trust_id, None)
        return kept[0]

    def forget(self, trust_id: str) -> None:
        """The token was refused: ask for another next time."""
        self._kept.pop(trust_id, None)

    async def _ask(self, trust_id: str) -> tuple[str, float]:
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": self._user}},
                "scope": {"OS-TRUST:trust": {"id": trust_id}},
            }
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        try:
            async with self._session.post(
                self._url + "?nocatalog", json=body, allow_redirects=False
            ) as answer:
                document = await answer.json() if answer.status == 201 else None
                token = answer.headers.get("X-Subject-Token")
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DeliveryFailed(f"keystone: {type(exc).__name__}") from None
        if status != 201 or not token or document is None:
            log.warning("trust_token_refused", trust=trust_id, status=status)
            raise DeliveryFailed(f"keystone answered {status} for the trust's token")
        try:
            expires = datetime.fromisoformat(document["token"]["expires_at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            raise DeliveryFailed("keystone's token could not be understood") from None
        now = self._clock()
        return token, expires - min(RENEW_BEFORE, max(0.0, expires - now) / 2)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Webhook(Protocol):
    """What `TrustSender` sends through (`node.notify.webhook.WebhookSender`)."""

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None: ...


class TrustSender:
    """A webhook to the URL without its `trust+` prefix, the trust's token in `X-Auth-Token`
    (the subscription's `post_headers` on top of it, as Zaqar merges them)."""

    def __init__(self, webhook: Webhook, tokens: TrustTokens) -> None:
        self._webhook = webhook
        self._tokens = tokens

    async def send(self, delivery: Delivery, notice: dict[str, Any]) -> None:
        trust_id = delivery.options.get("trust_id")
        if not isinstance(trust_id, str) or not trust_id:
            raise DeliveryFailed("a trust+ subscriber without a trust_id")
        token = await self._tokens.token(trust_id)
        extra = delivery.options.get("post_headers")
        headers = {"X-Auth-Token": token, **(extra if isinstance(extra, Mapping) else {})}
        plain = dataclasses.replace(
            delivery,
            subscriber=delivery.subscriber[len(PREFIX) :],
            options={**delivery.options, "post_headers": headers},
        )
        await self._webhook.send(plain, notice)

    async def close(self) -> None:
        await self._tokens.close()


def trust_senders(settings: NotifySettings, webhook: Webhook) -> dict[str, TrustSender]:
    """The senders of `trust+` schemes, when the node knows Keystone and its trustee."""
    if not (settings.keystone_url and settings.trustee_username):
        return {}
    sender = TrustSender(webhook, TrustTokens(settings))
    return dict.fromkeys(SCHEMES, sender)
