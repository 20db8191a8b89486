"""The one place where errors become HTTP: a table from error type to status and Zaqar's body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from marconi.logs import get_logger
from node import errors
from node.api.requestid import request_id

log = get_logger("node.api")

UNAVAILABLE_TITLE = "Service temporarily unavailable"
RETRY_AFTER = "30"

# Error type -> (status, title). Looked up along the exception's MRO, so the most specific wins.
TABLE: dict[type[Exception], tuple[int, str]] = {
    errors.QueueDoesNotExist: (404, "Not found"),
    errors.MessageDoesNotExist: (404, "Not found"),
    errors.ClaimDoesNotExist: (404, "Not found"),
    errors.InvalidClaim: (400, "Unable to delete"),
    errors.MessageNotClaimed: (400, "Unable to delete"),
    errors.MessageIsClaimed: (403, "Unable to delete"),
    errors.QueueFrozen: (503, UNAVAILABLE_TITLE),
    errors.StorageUnavailable: (503, UNAVAILABLE_TITLE),
}


def error_body(title: str, description: str) -> bytes:
    return json.dumps({"title": title, "description": description}).encode()


def error_response(
    status: int, title: str, description: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(title, description),
        content_type="application/json",
        headers=headers,
    )


def _lookup(exc: Exception) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return None


def to_response(exc: Exception, request_id: str) -> web.Response:
    if isinstance(exc, errors.ApiError):
        return error_response(exc.status, exc.title, exc.description)
    if isinstance(exc, errors.QueueFrozen):
        # Fencing: a distinct, machine-readable reason the proxy acts on.
        return error_response(
            503,
            UNAVAILABLE_TITLE,
            f"{exc} Please try again in a few seconds.",
            {"Retry-After": "1", "X-Marconi-Fence": exc.reason},
        )
    found = _lookup(exc)
    if found is not None:
        status, title = found
        if status == 503:
            log.warning("storage_unavailable", error=str(exc), request_id=request_id)
            return error_response(
                status,
                title,
                "The storage backend could not complete the request. "
                "Please try again in a few seconds.",
                {"Retry-After": RETRY_AFTER},
            )
        return error_response(status, title, str(exc))
    log.exception("unexpected_error", request_id=request_id)
    return error_response(
        503,
        UNAVAILABLE_TITLE,
        f"The request could not be completed (request id {request_id}). "
        "Please try again in a few seconds.",
        {"Retry-After": RETRY_AFTER},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def aiohttp_answer(exc: web.HTTPException) -> web.Response | None:
    """aiohttp's own answers (404 unknown path, 405 wrong method, 413 body over the limit) in
    Zaqar's shape; None for the rest, which go out as aiohttp made them."""
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return error_response(
            405, "Method not allowed", f"Allowed methods: {allow}.", {"Allow": allow}
        )
    if exc.status == 404:
        return error_response(404, "Not found", "The requested resource does not exist.")
    if exc.status == 413:
        return error_response(400, "Invalid API request", "The request body is too large.")
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        answer = aiohttp_answer(exc)
        if answer is None:
            raise
        return answer
    except errors.NodeError as exc:
        return to_response(exc, request_id(request))
    except ConnectionResetError:
        raise  # the client went away mid-request: nobody to answer
    except Exception as exc:
        return to_response(exc, request_id(request))
