"""A Keystone v3 client for one question: what does this token say?

`GET /v3/auth/tokens` with the token in `X-Subject-Token`. Keystone lets a caller validate a
token only when its policy `identity:validate_token` allows it: by default a service or
system-reader caller, or the token's own user. With service credentials the proxy asks as that
service user, as keystonemiddleware does (a deployment may drop the token-owner rule); without,
each token validates itself, which needs no secret in the proxy.

Nothing here logs or raises with a token in it; answers carry no service catalog (`nocatalog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from prometheus_client import Counter

from ground.logs import get_logger
from proxy.errors import IdentityUnavailable
from proxy.tokens import Clock, Identity, Refused

log = get_logger("proxy")
SUBJECT = "X-Subject-Token"
AUTH = "X-Auth-Token"
MAX_TOKEN = 8192  # Fernet tokens take ~200 characters, JWS ones ~800
RENEW_BEFORE = 60.0  # seconds before its expiry the service token is renewed

VALIDATIONS = Counter(
    "marconi_proxy_token_validations_total",
    "Tokens sent to Keystone for validation, by outcome.",
    ["result"],
)


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """The proxy's own Keystone user, with a role that may validate tokens (`service`)."""

    username: str
    password: str = field(repr=False)
    user_domain: str = "Default"
    project: str = "service"
    project_domain: str = "Default"

    def auth_request(self) -> dict[str, Any]:
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "domain": {"name": self.user_domain},
                            "password": self.password,
                        }
                    },
                },
                "scope": {
                    "project": {"name": self.project, "domain": {"name": self.project_domain}}
                },
            }
        }


def tokens_url(keystone_url: str) -> str:
    """`…/v3/auth/tokens` from Keystone's endpoint, given with or without its `/v3`."""
    base = keystone_url.rstrip("/")
    return (base if base.endswith("/v3") else base + "/v3") + "/auth/tokens"


def well_formed(token: str) -> bool:
    """Whether a token could be one at all (printable ASCII, bounded): others are not sent."""
    return 0 < len(token) <= MAX_TOKEN and token.isascii() and token.isprintable()


def identity_of(document: Any) -> Identity:
    """The identity in Keystone's answer to a validation (`{"token": {...}}`)."""
    try:
        token = document["token"]
        project = token.get("project")
        return Identity(
            user_id=str(token["user"]["id"]),
            project_id=str(project["id"]) if project else None,
            roles=tuple(str(role["name"]) for role in token.get("roles", ())),
            expires_at=datetime.fromisoformat(token["expires_at"]).timestamp(),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise IdentityUnavailable("Keystone's answer could not be understood.") from None


class KeystoneClient:
    def __init__(
        self,
        keystone_url: str,
        service: ServiceUser | None,
        timeout: float,
        clock: Clock = time.time,
    ) -> None:
        self.url = tokens_url(keystone_url)
        self.service = service
        self.clock = clock
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._service_token: str | None = None
        self._service_expires = 0.0
        self._login = asyncio.Lock()

    async def close(self) -> None:
        await self.session.close()

    async def validate(self, token: str) -> Identity | Refused:
        """The token's identity, or `Refused` (invalid, expired, revoked).

        Raises IdentityUnavailable when Keystone cannot say (unreachable, failing, or refusing
        the proxy's own credentials).
        """
        if not well_formed(token):
            VALIDATIONS.labels("refused").inc()
            return Refused.TOKEN
        try:
            verdict = await self._validate(token)
        except IdentityUnavailable:
            VALIDATIONS.labels("error").inc()
            raise
        VALIDATIONS.labels("valid" if isinstance(verdict, Identity) else "refused").inc()
        return verdict

    async def _validate(self, token: str) -> Identity | Refused:
        if self.service is None:
            status, document = await self._get(token, token)
            if status in (401, 404):  # asking as itself: 401 means the token is no good
                return Refused.TOKEN
            return self._answer(status, document)
        status, document = await self._get(await self._service_login(), token)
        if status == 401:  # the service token expired or was revoked: log in again, once
            self._service_token = None
            status, document = await self._get(await self._service_login(), token)
            if status == 401:
                log.error("keystone_service_user_refused", url=self.url)
                raise IdentityUnavailable("The proxy could not authenticate with Keystone.")
        if status == 404:
            return Refused.TOKEN
        return self._answer(status, document)

    def _answer(self, status: int, document: Any) -> Identity:
        if status == 200:
            return identity_of(document)
        if status == 403:
            log.error("keystone_validation_forbidden", url=self.url, service=bool(self.service))
            raise IdentityUnavailable("The proxy may not validate tokens with Keystone.")
        log.warning("keystone_failed", url=self.url, status=status)
        raise IdentityUnavailable("Keystone could not validate the token.")

    async def _get(self, auth: str, subject: str) -> tuple[int, Any]:
        headers = {AUTH: auth, SUBJECT: subject, "Accept": "application/json"}
        async with self._request("GET", self.url + "?nocatalog", headers=headers) as response:
            return response.status, (await self._json(response) if response.status == 200 else None)

    async def _service_login(self) -> str:
        """The service user's token, logged in again when it is about to expire."""
        assert self.service is not None
        async with self._login:
            if self._service_token is None or self.clock() >= self._service_expires:
                await self._log_in(self.service)
            assert self._service_token is not None
            return self._service_token

    async def _log_in(self, service: ServiceUser) -> None:
        async with self._request("POST", self.url, json=service.auth_request()) as response:
            if response.status != 201:
                log.error("keystone_service_login_failed", url=self.url, status=response.status)
                raise IdentityUnavailable("The proxy could not authenticate with Keystone.")
            document = await self._json(response)
            token = response.headers.get(SUBJECT)
        if not token:
            raise IdentityUnavailable("Keystone's answer could not be understood.")
        expires_at = identity_of(document).expires_at
        self._service_token = token
        self._service_expires = expires_at - min(RENEW_BEFORE, (expires_at - self.clock()) / 2)

    @contextlib.asynccontextmanager
    async def _request(
        self, method: str, url: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request to Keystone. Transport failures become IdentityUnavailable, logged by
        kind only: an aiohttp error may quote what was sent."""
        try:
            async with self.session.request(
                method, url, allow_redirects=False, **kwargs
            ) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("keystone_unreachable", url=url, error=type(exc).__name__)
            raise IdentityUnavailable("Keystone could not be reached.") from None

    @staticmethod
    async def _json(response: aiohttp.ClientResponse) -> Any:
        try:
            return await response.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            raise IdentityUnavailable("Keystone's answer could not be understood.") from None
