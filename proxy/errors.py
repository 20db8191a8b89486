"""The proxy's closed error hierarchy, and the one table that turns errors into answers (for
both servers: `proxy.steps` calls it).

Proxy and catalog errors are mapped here; input errors and aiohttp's routing answers keep the wire
contract's wording (`wire.errors`), as the node answers them, so a client sees one API.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import NamedTuple

from aiohttp import web

from catalog import errors as catalog
from ground.logs import get_logger
from ground.requestid import REQUEST_ID
from proxy.http1 import encode_response
from wire.errors import (
    RETRY_AFTER,
    UNAVAILABLE_TITLE,
    ApiError,
    error_body,
    error_response,
    unexpected_description,
)

log = get_logger("proxy")


class ProxyError(Exception):
    """Root of every error the proxy raises on purpose; carries its HTTP answer."""

    status = 503
    title = UNAVAILABLE_TITLE
    retry_after: str | None = "30"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": self.retry_after} if self.retry_after else None


class PartitionUnavailable(ProxyError):
    """No node of the owning partition could be reached (or the partition is unknown)."""


class QueueFrozen(ProxyError):
    """The queue stayed frozen longer than a request may wait, or too many requests wait."""

    retry_after = "1"


class NotAuthorized(ProxyError):
    """The caller is known but may not do this (no admin role; another project's queues)."""

    status = 403
    title = "Not authorized"
    retry_after = None

    def __init__(
        self, description: str = "You are not authorized to complete this action."
    ) -> None:
        super().__init__(description)


class NotAuthenticated(ProxyError):
    """No token, or one Keystone refused (invalid, expired, revoked): 401 with the header
    keystonemiddleware sends, naming where to get a token."""

    status = 401
    title = "Unauthorized"
    retry_after = None

    def __init__(self, keystone_url: str) -> None:
        super().__init__("The request you have made requires authentication.")
        self.keystone_url = keystone_url

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": f'Keystone uri="{self.keystone_url}"'}


class IdentityUnavailable(ProxyError):
    """Keystone could not be asked (unreachable, failing, or refusing the proxy's own user)."""

    retry_after = "5"


class OverLimit(ProxyError):
    """A project is over its request rate or its requests in flight (see proxy/limits.py)."""

    status = 429
    title = "Too many requests"

    def __init__(self, limit: str, retry_after: int, description: str) -> None:
        super().__init__(description)
        self.limit = limit
        self.retry_after = str(retry_after)


class BadRequest(ProxyError):
    """An admin request with a body or a name the admin API refuses."""

    status = 400
    title = "Invalid request body"
    retry_after = None


# Catalog error type -> (status, title); looked up along the MRO, most specific first.
CATALOG: dict[type[Exception], tuple[int, str]] = {
    catalog.NotFound: (404, "Not found"),
    catalog.Refused: (409, "Resource conflict"),
    catalog.Conflict: (409, "Resource conflict"),
    catalog.CatalogUnavailable: (503, UNAVAILABLE_TITLE),
}


class ErrorAnswer(NamedTuple):
    """The proxy's answer to an error: built once, sent by either server."""

    status: int
    title: str
    description: str
    headers: dict[str, str] | None = None

    def response(self) -> web.Response:
        """For aiohttp's server (its request id middleware adds the request id)."""
        return error_response(self.status, self.title, self.description, self.headers)

    def encode(self, request_id: str) -> bytes:
        """For the lean path: the whole HTTP/1.1 answer, with the request id."""
        headers = [("content-type", "application/json"), *(self.headers or {}).items()]
        headers.append((REQUEST_ID, request_id))
        reason = HTTPStatus(self.status).phrase
        body = error_body(self.title, self.description)
        return encode_response(self.status, reason, headers, body)


def _catalog_answer(exc: catalog.CatalogError) -> ErrorAnswer:
    for cls in type(exc).__mro__:
        if cls in CATALOG:
            status, title = CATALOG[cls]
            break
    else:
        status, title = 503, UNAVAILABLE_TITLE
    if status == 503:
        log.warning("catalog_unavailable", error=str(exc))
        return ErrorAnswer(
            503,
            title,
            "The catalog could not be reached. Please try again in a few seconds.",
            {"Retry-After": "5"},
        )
    return ErrorAnswer(status, title, str(exc))


def error_answer(exc: Exception, request_id: str) -> ErrorAnswer:
    """The answer to an error raised on the request path (the one table, for both servers)."""
    if isinstance(exc, ProxyError):
        if exc.status >= 500:
            log.warning("proxy_unavailable", error=exc.description)
        return ErrorAnswer(exc.status, exc.title, exc.description, exc.headers())
    if isinstance(exc, catalog.CatalogError):
        return _catalog_answer(exc)
    if isinstance(exc, ApiError):
        return ErrorAnswer(exc.status, exc.title, exc.description)
    log.exception("unexpected_error", request_id=request_id)
    return ErrorAnswer(
        503, UNAVAILABLE_TITLE, unexpected_description(request_id), {"Retry-After": RETRY_AFTER}
    )
