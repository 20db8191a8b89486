"""What Zaqar's `before` hooks check on every versioned request, wrapped around each handler.

Order as in Zaqar: a pre-signed URL's signature (when the request brings one), Accept,
Content-Type, Client-ID, X-Project-ID, then the queue or topic name.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ground.types import Handler
from wire import signed_urls, validation
from wire.errors import ApiError, BadHeader, NotAcceptable

PROJECT = web.RequestKey("project", str)
CLIENT_ID = web.RequestKey("client_id", str)


def accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("*/*", "application/*", "application/json") or media.endswith("+json"):
            return True
    return False


def _require_accepts_json(request: web.Request) -> None:
    if not accepts_json(request.headers.get("Accept")):
        raise NotAcceptable(
            "Endpoint only serves `application/json`; specify client-side media type support "
            'with the "Accept" header.'
        )


def _refuse_urlencoded(request: web.Request) -> None:
    if (
        request.body_exists
        and request.headers.get("Content-Type", "").lower() == "application/x-www-form-urlencoded"
    ):
        raise ApiError(
            "Endpoint does not accept `application/x-www-form-urlencoded` content; currently "
            "supported media type is `application/json`; specify proper client-side media type "
            'with the "Content-Type" header.',
            title="Invalid Content-Type",
        )


def client_id(request: web.Request, required: bool) -> str:
    raw = request.headers.get("Client-ID")
    if raw is None:
        if required:
            raise BadHeader("The Client-ID header is required.", title="Missing header value")
        return ""
    try:
        uuid.UUID(raw)
    except ValueError:
        raise BadHeader("Malformed hexadecimal UUID.", title="Wrong UUID value") from None
    return raw


def _project(request: web.Request, required: bool) -> str:
    project = request.headers.get("X-Project-ID")
    if project == "":
        raise BadHeader(
            "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID "
            "and retry.",
            title="Empty project header not allowed",
        )
    if project is None:
        if required:
            raise BadHeader("The header X-PROJECT-ID was missing", title="Project-Id Missing")
        return ""
    if not validation.utf8(project):
        raise BadHeader(
            "X-PROJECT-ID must be UTF-8 text. Specify the right header X-PROJECT-ID and retry.",
            title="Invalid project header",
        )
    return project


def with_checks(
    handler: Handler, *, ids_required: bool, signed_url_key: str | None = None
) -> Handler:
    """Wrap a route's handler in the version's before-hooks.

    v1.1 and v2 require Client-ID and X-Project-ID on every request; v1 takes them if given.
    A request that brings `URL-Signature` must match it (`signed_url_key` is the secret; with
    none, every such request is refused, as in Zaqar).
    (A wrapper rather than a sub-application middleware: one route lookup per request.)
    """

    async def hooked(request: web.Request) -> web.StreamResponse:
        if signed_urls.is_signed(request.headers):
            signed_urls.check(signed_url_key, request.method, request.path, request.headers)
        _require_accepts_json(request)
        _refuse_urlencoded(request)
        request[CLIENT_ID] = client_id(request, ids_required)
        project = _project(request, ids_required)
        request[PROJECT] = project
        queue = request.match_info.get("queue_name")
        if queue is not None:
            validation.queue_identification(queue, project)
        topic = request.match_info.get("topic_name")
        if topic is not None:
            validation.topic_identification(topic, project)
        return await handler(request)

    return hooked
