"""Who a request comes from: `noauth` trusts its headers, `keystone` its token alone.

With Keystone, every request but `GET /` (the versions document, which load balancers probe),
the proxy's own probes `/healthz` and `/readyz`, `/metrics` (scraped by Prometheus) and
`/openapi.json` (the API's description; none of them part of Zaqar's API) needs an `X-Auth-Token`
that Keystone validates, as keystonemiddleware in front of Zaqar requires for ping and health
too. The proxy then forwards the token's project as `X-Project-ID` and its roles as `X-Roles`,
whatever the client sent, and never the token itself. A client that names another project in
`X-Project-ID` is refused (403) rather than silently moved to its own project, where the same
queue name is another queue: a delete meant for one must not land on the other.

A request that brings a pre-signed URL's `URL-Signature` (made by a share, `POST
/v2/queues/{q}/share`) needs no token, as in Zaqar, whose signed-headers middleware skips
keystonemiddleware for it: the proxy checks the signature with the nodes' secret
(`wire.signed_urls`) and lets the request in for exactly the signed project, paths and methods
until expiry, with that project and no roles; anything else with a signature is 404, as Zaqar
answers it. As in Zaqar, paths under `/v1` (v1 and v1.1) need a token whatever they bring.

This hook runs first (proxy.hooks), before the admin-role check and anything that reads the
project.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Counter

from proxy.errors import NotAuthenticated, NotAuthorized
from proxy.forward import Outgoing
from proxy.hooks import Hook
from proxy.keystone import AUTH, SUBJECT, KeystoneClient, ServiceUser
from proxy.probes import PROBES
from proxy.settings import AuthMode, ProxySettings
from proxy.tokens import Identity, Refused, TokenCache, token_key
from proxy.trusts import TrustMaker
from wire import openapi, signed_urls

PUBLIC = frozenset({"/", "/metrics", openapi.PATH, *PROBES})
PROJECT = "X-Project-ID"
ROLES = "X-Roles"
# Identity headers a client might send to pass for someone else (keystonemiddleware's set, as
# far as a node or a later middleware could read them); dropped before anything else sees them.
DROPPED = frozenset(
    name.lower()
    for name in (
        AUTH,
        SUBJECT,
        ROLES,
        PROJECT,  # set again from the token
        "X-Service-Token",
        "X-User-ID",
        "X-User-Name",
        "X-Identity-Status",
        "X-Service-Identity-Status",
        "X-Domain-ID",
        "X-Tenant-ID",
    )
)

CACHE = Counter(
    "marconi_proxy_token_cache_total", "Token lookups in the proxy's cache.", ["result"]
)
CACHE_HITS, CACHE_MISSES = CACHE.labels("hit"), CACHE.labels("miss")


class Authentication(Protocol):
    """What the application needs from an authentication mode."""

    hooks: tuple[Hook, ...]

    def lifecycle(self, app: web.Application) -> AsyncIterator[None]: ...

    def reads_body(self, method: str, path: str) -> bool:
        """Whether a hook reads (or changes) the body of such a request (`proxy.steps`)."""
        ...


class NoAuth:
    """Development: `X-Project-ID` and `X-Roles` are taken as sent. No hook at all."""

    hooks: tuple[Hook, ...] = ()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        yield

    def reads_body(self, method: str, path: str) -> bool:
        return False


class KeystoneAuth:
    def __init__(
        self,
        client: KeystoneClient,
        cache: TokenCache,
        keystone_url: str,
        signed_url_key: str | None = None,
        trusts: TrustMaker | None = None,
    ) -> None:
        self.client = client
        self.trusts = trusts  # makes the trusts of `trust+` subscriptions
        self.cache = cache
        self.keystone_url = keystone_url
        self.signed_url_key = signed_url_key
        self._pending: dict[bytes, asyncio.Task[Identity | Refused]] = {}
        self.hooks: tuple[Hook, ...] = (self.hook,)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        yield
        await self.client.close()  # after in-flight requests drained
        if self.trusts is not None:
            await self.trusts.close()

    def reads_body(self, method: str, path: str) -> bool:
        return self.trusts is not None and self.trusts.wants(method, path)

    async def identity(self, token: str) -> Identity:
        """The token's identity: from the cache, else from Keystone (one call for all the
        requests that bring the same new token at once). NotAuthenticated if refused."""
        verdict = self.cache.get(token)
        if verdict is None:
            CACHE_MISSES.inc()
            verdict = await asyncio.shield(self._validation(token))
        else:
            CACHE_HITS.inc()
        if isinstance(verdict, Refused):
            raise NotAuthenticated(self.keystone_url)
        return verdict

    def _validation(self, token: str) -> asyncio.Task[Identity | Refused]:
        key = token_key(token)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._validate(token))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        return task

    async def _validate(self, token: str) -> Identity | Refused:
        verdict = await self.client.validate(token)
        self.cache.put(token, verdict)
        return verdict

    def _settled(self, key: bytes, task: asyncio.Task[Identity | Refused]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: the waiters may all have gone

    async def hook(self, out: Outgoing) -> None:
        """The request's identity from its token, in place of whatever it claimed."""
        headers = out.headers
        token = headers.get(AUTH)
        claimed = headers.getall(PROJECT, None)
        for name in DROPPED:
            headers.popall(name, None)
        path = out.path.partition("?")[0]
        if path in PUBLIC:
            return
        if signed_urls.is_signed(headers) and not path.startswith("/v1"):
            self.signed(out.method, path, headers, claimed)
            return
        if not token:
            raise NotAuthenticated(self.keystone_url)
        identity = await self.identity(token)
        if identity.project_id is not None:
            if claimed is not None and claimed != [identity.project_id]:
                raise NotAuthorized(
                    "X-Project-ID names a project other than the token's; leave it out or "
                    "send the token's project."
                )
            headers[PROJECT] = identity.project_id
            if self.trusts is not None:
                await self.trusts.prepare(out, path, token, identity)
        elif not _admin_path(path):
            raise NotAuthorized(
                "The token is scoped to no project; ask Keystone for a project-scoped token."
            )
        headers[ROLES] = identity.roles_header

    def signed(
        self, method: str, path: str, headers: CIMultiDict[str], claimed: list[str] | None
    ) -> None:
        """A pre-signed request: its signature in place of a token; the signed project and
        nothing else (no roles) goes on. Raises `SignatureRefused` (404) when it does not
        match."""
        if claimed is None or len(claimed) != 1:
            raise signed_urls.SignatureRefused()  # the signed project, once, or nothing
        headers[PROJECT] = claimed[0]
        signed_urls.check(self.signed_url_key, method, path, headers)


def _admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def authentication(settings: ProxySettings) -> Authentication:
    """The mode the settings ask for (ValueError if they cannot work). Call within the running
    event loop."""
    settings.check()
    if settings.auth is AuthMode.NOAUTH:
        return NoAuth()
    service = None
    if settings.keystone_username:
        service = ServiceUser(
            settings.keystone_username,
            settings.keystone_password,
            settings.keystone_user_domain,
            settings.keystone_project,
            settings.keystone_project_domain,
        )
    client = KeystoneClient(settings.keystone_url, service, settings.keystone_timeout)
    cache = TokenCache(settings.token_cache_size, settings.token_cache_ttl)
    trusts = None
    if settings.trustee_user_id:
        trusts = TrustMaker(
            settings.keystone_url, settings.trustee_user_id, settings.keystone_timeout
        )
    return KeystoneAuth(
        client, cache, settings.keystone_url, settings.signed_url_key or None, trusts
    )
