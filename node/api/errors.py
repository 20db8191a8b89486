"""The one place where errors become HTTP: a table from error type to status and Zaqar's body."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Counter

from ground.logs import get_logger
from ground.requestid import request_id
from ground.types import Handler
from node import errors
from wire.errors import (
    RETRY_AFTER,
    UNAVAILABLE_TITLE,
    ApiError,
    aiohttp_answer,
    error_response,
    unexpected,
)
from wire.fences import fence_header

log = get_logger("node.api")

STORAGE_ERRORS = Counter(
    "marconi_node_storage_errors_total",
    "Requests answered 503 because the partition's storage failed (not fences).",
)

# Error type -> (status, title). Looked up along the exception's MRO, so the most specific wins.
TABLE: dict[type[Exception], tuple[int, str]] = {
    errors.QueueDoesNotExist: (404, "Not found"),
    errors.MessageDoesNotExist: (404, "Not found"),
    errors.ClaimDoesNotExist: (404, "Not found"),
    errors.SubscriptionDoesNotExist: (404, "Not found"),
    errors.SubscriptionAlreadyExists: (409, "Resource conflict"),
    errors.InvalidClaim: (400, "Unable to delete"),
    errors.MessageNotClaimed: (400, "Unable to delete"),
    errors.MessageIsClaimed: (403, "Unable to delete"),
    errors.QueueFrozen: (503, UNAVAILABLE_TITLE),
    errors.StorageUnavailable: (503, UNAVAILABLE_TITLE),
}


def _lookup(exc: Exception) -> tuple[int, str] | None:
    for cls in type(exc).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return None


def to_response(exc: Exception, request_id: str) -> web.Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.title, exc.description)
    if isinstance(exc, errors.QueueFrozen):
        # Fencing: a distinct, machine-readable reason the proxy acts on.
        return error_response(
            503,
            UNAVAILABLE_TITLE,
            f"{exc} Please try again in a few seconds.",
            {"Retry-After": "1", "X-Marconi-Fence": fence_header(exc.reason, exc.lifts)},
        )
    found = _lookup(exc)
    if found is not None:
        status, title = found
        if status == 503:
            STORAGE_ERRORS.inc()
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
    return unexpected(request_id)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        answer = aiohttp_answer(exc)
        if answer is None:
            raise
        return answer
    except (errors.NodeError, ApiError) as exc:
        return to_response(exc, request_id(request))
    except ConnectionResetError:
        raise  # the client went away mid-request: nobody to answer
    except Exception as exc:
        return to_response(exc, request_id(request))
