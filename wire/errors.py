"""Zaqar's error answers: the `ApiError` family for input the API refuses, and the bodies and
answers every server sends (`{"title": ..., "description": ...}`)."""

from __future__ import annotations

import json

from aiohttp import web

UNAVAILABLE_TITLE = "Service temporarily unavailable"
RETRY_AFTER = "30"


class ApiError(Exception):
    """A request the API refuses; carries its Zaqar title and description."""

    status = 400
    title = "Invalid API request"

    def __init__(self, description: str, *, title: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if title is not None:
            self.title = title


class ValidationFailed(ApiError):
    """Input broke one of the API's limits (Zaqar's `HTTPBadRequestAPI`)."""


class BadRequestBody(ApiError):
    """The body is missing, unparsable or of the wrong shape (Zaqar's `HTTPBadRequestBody`)."""

    title = "Invalid request body"


class BadHeader(ApiError):
    """A required header is missing or malformed; the title says which."""


class NotAcceptable(ApiError):
    status = 406
    title = "Media type not acceptable"


class UnsupportedMediaType(ApiError):
    status = 415
    title = "Unsupported media type"


class ResourceNotFound(ApiError):
    """A route or API version that does not exist."""

    status = 404
    title = "Not found"


class MethodNotAllowed(ApiError):
    status = 405
    title = "Method not allowed"


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


def unexpected(request_id: str) -> web.Response:
    """The answer to an error nobody expected: a generic body naming the request id (the log
    has the rest), never the exception's text."""
    return error_response(
        503, UNAVAILABLE_TITLE, unexpected_description(request_id), {"Retry-After": RETRY_AFTER}
    )


def unexpected_description(request_id: str) -> str:
    return (
        f"The request could not be completed (request id {request_id}). "
        "Please try again in a few seconds."
    )


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
