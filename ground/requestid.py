"""One request id per request, carried from the proxy to the node in `X-Openstack-Request-ID`."""

from __future__ import annotations

import random
import uuid

import structlog
from aiohttp import web

from ground.types import Handler

REQUEST_ID = "X-Openstack-Request-ID"
REQUEST_ID_KEY = web.RequestKey("request_id", str)


def new_request_id() -> str:
    """`req-<uuid4>` from the `random` generator: ids need uniqueness, not secrecy, and
    `uuid.uuid4()` reads os.urandom, which costs tens of microseconds a call on some VMs."""
    return f"req-{uuid.UUID(int=random.getrandbits(128), version=4)}"


def request_id(request: web.Request) -> str:
    rid: str = request.get(REQUEST_ID_KEY, "-")
    return rid


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Carry the caller's request id (the proxy sets one) or make one; echo it back."""
    rid = request.headers.get(REQUEST_ID) or new_request_id()
    request[REQUEST_ID_KEY] = rid
    structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    response.headers[REQUEST_ID] = rid
    return response
