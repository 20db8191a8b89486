"""The steps every client request passes before the request path, written once for the proxy's
two servers.

In order: the request id (the client's, or a new one), the metrics (a count and a time by
route), the error table (whatever is raised below becomes Zaqar's error body), then the hooks
(`proxy.hooks`: authentication's, the limits', any added). The lean path (`proxy.pipeline`)
calls these methods itself; aiohttp's server runs them as the middlewares `middlewares()`
makes. A change to a step is made here and reaches both.

The lean path has a request's body before its hooks run. aiohttp's server (a chunked body, an
`Expect: 100-continue`, ...) reads it later, in the handler, so for the few requests whose body
a hook reads or changes (`reads_body`: a `trust+` subscription's, `proxy.trusts`), the steps
read it first, and the handler forwards it as the hooks left it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict, CIMultiDictProxy

from ground.metrics import Recorder, route_label
from ground.requestid import REQUEST_ID, REQUEST_ID_KEY, new_request_id, request_id
from ground.types import Handler
from proxy.errors import ErrorAnswer, error_answer
from proxy.forward import ADMITTED_BODY, Outgoing, copy_headers
from proxy.hooks import Hook, Release, release_all, run_hooks
from proxy.http1 import HOP_BY_HOP
from wire.errors import aiohttp_answer

BodyWanted = Callable[[str, str], bool]  # (method, path) -> whether a hook reads the body


def _never(method: str, path: str) -> bool:
    return False


class Steps:
    """The steps, with the hooks and the metrics recorder of one application."""

    def __init__(
        self, hooks: Sequence[Hook], recorder: Recorder, reads_body: BodyWanted = _never
    ) -> None:
        self.hooks = tuple(hooks)
        self.recorder = recorder
        self.reads_body = reads_body

    @staticmethod
    def request_id(given: str | None) -> str:
        """The client's request id, or a new one when it sent none (or an empty one)."""
        return given or new_request_id()

    def record(self, method: str, route: str, status: int, started: float) -> None:
        """Count an answered request and its time since `started` (`time.perf_counter()`)."""
        self.recorder.record(method, route, status, time.perf_counter() - started)

    @staticmethod
    def error(exc: Exception, rid: str) -> ErrorAnswer:
        """The answer to an error raised on the request path."""
        return error_answer(exc, rid)

    async def admit(self, out: Outgoing) -> list[Release]:
        """Run the hooks; the releases to call once the request is over. Raises what a hook
        raises to refuse the request."""
        return await run_hooks(self.hooks, out)

    @staticmethod
    def release(releases: Sequence[Release]) -> None:
        """What the hooks held for a request, once it is answered, failed or abandoned."""
        release_all(releases)

    # --- as aiohttp's middlewares --------------------------------------------------------------

    def middlewares(self) -> list[Middleware]:
        """The steps for requests that came through aiohttp's server, in their order."""
        return [self._request_id, self._metrics, self._errors, self._hooks]

    @web.middleware
    async def _request_id(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = self.request_id(request.headers.get(REQUEST_ID))
        request[REQUEST_ID_KEY] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            response = await handler(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        response.headers[REQUEST_ID] = rid
        return response

    @web.middleware
    async def _metrics(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.record(request.method, route_label(request), status, started)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            answer = aiohttp_answer(exc)  # worded as the node words them
            if answer is None:
                raise
            return answer
        except ConnectionResetError:
            raise  # the client went away mid-request: nobody to answer
        except Exception as exc:
            return self.error(exc, request_id(request)).response()

    @web.middleware
    async def _hooks(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.hooks:
            return await handler(request)
        headers = copy_headers(request.headers)
        headers[REQUEST_ID] = request_id(request)
        before = headers.copy()
        wanted = self.reads_body(request.method, request.raw_path.partition("?")[0])
        body = await _read_body(request) if wanted else None
        out = Outgoing(request.method, request.raw_path, headers, body or b"")
        releases = await self.admit(out)
        try:
            if out.headers != before:  # what a hook changed, the handlers see
                kept = ((k, v) for k, v in request.headers.items() if k.lower() in HOP_BY_HOP)
                merged = CIMultiDict(kept)
                merged.extend(out.headers)
                request = request.clone(headers=CIMultiDictProxy(merged))
            if body is not None:
                request[ADMITTED_BODY] = out.body  # what a hook made of it goes on
            return await handler(request)
        finally:
            self.release(releases)


async def _read_body(request: web.Request) -> bytes | None:
    """The whole body, from its stream (after aiohttp's `read()` a request can no longer be
    cloned with the hooks' headers), bounded as `read()` bounds it; None, unread, when its
    declared length is over the bound (`oversized_middleware` refuses it)."""
    limit = request.client_max_size
    if limit and (request.content_length or 0) > limit:
        return None
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if limit and len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)
