"""One request id per request, carried from the proxy to the node in `X-Openstack-Request-ID`."""

from __future__ import annotations

import itertools
import os
import random

import structlog
from aiohttp import web

from ground.types import Handler

REQUEST_ID = "X-Openstack-Request-ID"
REQUEST_ID_KEY = web.RequestKey("request_id", str)


class _RequestIds:
    """`req-<uuid4>` ids, made fast: 80 random bits drawn once per process (again in a forked
    child), then a counter in the last 48 bits. Ids need uniqueness, not secrecy, and
    `uuid.uuid4()` reads os.urandom, which costs tens of microseconds a call on some VMs."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        h = f"{random.getrandbits(80):020x}"
        variant = "89ab"[int(h[15], 16) % 4]
        self._prefix = f"req-{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[16:19]}-"
        # from a random 40-bit start, the counter stays within its 48 bits for 2**47 ids
        self._count = itertools.count(random.getrandbits(40))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


new_request_id = _RequestIds()


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
