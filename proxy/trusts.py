"""Keystone trusts for `trust+http(s)://` subscribers, made from the caller's token.

Zaqar 23 creates a trust when a `trust+` subscription is made (`TrustTask.register`): the
caller (trustor) delegates its roles on its project to the deployment's trustee user, with
impersonation, expiring with the subscription's ttl, and the trust's id is kept in the
subscription's options as `trust_id`; each notification then carries a token of that trust
(`node.notify.trust`). Only the proxy sees tokens (it forwards none to the nodes), so under
`--auth keystone` it makes the trust here, between validating the token and forwarding: a `POST`
of a subscription (to a queue or a topic) whose subscriber starts with `trust+` and whose options
name no `trust_id` has one added to its body.

A `trust_id` the client names itself (Zaqar lets it) must be a trust the caller made, for its
project, to the trustee: Keystone shows a trust only to its trustor and trustee, and the proxy
asks with the caller's token. Otherwise anyone could have someone else's trust's tokens posted
to a URL of theirs.

Both of the proxy's servers call `prepare` from the same authentication hook with the body at
hand: aiohttp's server (a chunked body, `Expect: 100-continue`, ...) reads it before the hooks
for the requests `wants` names (`proxy.steps`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ground.logs import get_logger
from proxy.errors import IdentityUnavailable, NotAuthorized
from proxy.forward import Outgoing
from proxy.keystone import AUTH
from proxy.tokens import Identity
from wire.limits import ApiLimits

log = get_logger("proxy")
PREFIX = "trust+"
SUBSCRIPTIONS = re.compile(r"^/v2/(queues|topics)/[^/]+/subscriptions/?$")
NOT_YOURS = "options.trust_id names no trust of yours, on this project, to this deployment."


class TrustMaker:
    def __init__(
        self,
        keystone_url: str,
        trustee_user_id: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        base = keystone_url.rstrip("/")
        self.url = (base if base.endswith("/v3") else base + "/v3") + "/OS-TRUST/trusts"
        self.trustee = trustee_user_id
        self.clock = clock
        self.default_ttl = ApiLimits().default_subscription_ttl
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        await self.session.close()

    @staticmethod
    def wants(method: str, path: str) -> bool:
        """Whether `prepare` reads the body of such a request: a subscription's creation."""
        return method == "POST" and SUBSCRIPTIONS.match(path) is not None

    async def prepare(self, out: Outgoing, path: str, token: str, identity: Identity) -> None:
        """Give a new `trust+` subscription its trust, or check the one it names."""
        if not out.body or not self.wants(out.method, path):
            return
        try:
            document = json.loads(out.body)
        except ValueError:
            return  # the node answers it
        if not isinstance(document, dict):
            return
        subscriber = document.get("subscriber")
        options = document.get("options") or {}
        if not isinstance(subscriber, str) or not subscriber.startswith(PREFIX):
            return
        if not isinstance(options, dict):
            return
        named = options.get("trust_id")
        if named is not None:
            if not isinstance(named, str) or not await self._owned(named, token, identity):
                raise NotAuthorized(NOT_YOURS)
            return
        ttl = document.get("ttl")
        ttl = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else self.default_ttl
        options = {**options, "trust_id": await self._create(token, identity, ttl)}
        out.body = json.dumps({**document, "options": options}).encode()

    async def _create(self, token: str, identity: Identity, ttl: int) -> str:
        expires = datetime.fromtimestamp(self.clock() + ttl, UTC)
        trust = {
            "trustor_user_id": identity.user_id,
            "trustee_user_id": self.trustee,
            "project_id": identity.project_id,
            "impersonation": True,
            "roles": [{"name": role} for role in identity.roles],
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        status, document = await self._call("POST", self.url, token, {"trust": trust})
        if status == 201 and isinstance(document, dict):
            trust_id = document.get("trust", {}).get("id")
            if isinstance(trust_id, str):
                return trust_id
        if status == 403:
            raise NotAuthorized("Keystone refused to make a trust from this token.")
        log.warning("keystone_trust_failed", status=status)
        raise IdentityUnavailable("Keystone could not make the subscription's trust.")

    async def _owned(self, trust_id: str, token: str, identity: Identity) -> bool:
        if not trust_id or "/" in trust_id or not trust_id.isascii():
            return False
        status, document = await self._call("GET", f"{self.url}/{trust_id}", token)
        if status in (403, 404):
            return False
        if status != 200 or not isinstance(document, dict):
            log.warning("keystone_trust_lookup_failed", status=status)
            raise IdentityUnavailable("Keystone could not show the subscription's trust.")
        trust = document.get("trust") or {}
        return (
            trust.get("trustor_user_id") == identity.user_id
            and trust.get("project_id") == identity.project_id
            and trust.get("trustee_user_id") == self.trustee
        )

    async def _call(self, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {AUTH: token, "Accept": "application/json"}
        try:
            async with self.session.request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as answer:
                document = await answer.json() if answer.status in (200, 201) else None
                return answer.status, document
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("keystone_unreachable", error=type(exc).__name__)
            raise IdentityUnavailable("Keystone could not be reached.") from None
