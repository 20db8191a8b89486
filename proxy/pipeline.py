"""The steps of a request on the lean path, in the order of the app's middlewares: the request
id, metrics, the error table, the hooks, then the queue handler."""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Sequence

import structlog
from aiohttp import web

from marconi.metrics import Recorder
from node.api.requestid import REQUEST_ID
from proxy.errors import error_answer
from proxy.forward import Outgoing
from proxy.handler import Proxy
from proxy.hooks import Hook, run_hooks
from proxy.http1 import RequestHead, encode_response, parse_lines
from proxy.routing import QueueRoute, Target, match_queue_route

_REQUEST_ID_LINE = b"%s: %%s\r\n" % REQUEST_ID.encode()


class _RequestIds:
    """`req-<uuid4>` ids made five times faster than the node makes them: 80 random bits drawn
    once per process (again in a forked child), then a counter in the last 48 bits."""

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


class LeanPath:
    """Queue routes, served without aiohttp's request objects, router or middleware chain."""

    def __init__(self, proxy: Proxy, hooks: Sequence[Hook], recorder: Recorder) -> None:
        self.proxy = proxy
        self.hooks = hooks
        self.recorder = recorder

    def route(self, head: RequestHead) -> QueueRoute | None:
        """The queue route of a request; None leaves it to aiohttp's server."""
        return match_queue_route(head.target.partition("?")[0])

    async def answer(self, head: RequestHead, route: QueueRoute, body: bytes) -> list[bytes]:
        """The answer's bytes; errors become answers here, as in the error middleware."""
        started = time.perf_counter()
        rid = head.request_id
        if head.verbatim:
            verbatim = head.lines
            if rid is None:
                rid = new_request_id()
                verbatim += _REQUEST_ID_LINE % rid.encode()
            out = Outgoing(head.method, head.target, None, body, verbatim)
        else:
            out = Outgoing(head.method, head.target, parse_lines(head.lines), body)
        if not rid:  # absent or empty: one is made, as the request id middleware does
            rid = out.headers[REQUEST_ID] = new_request_id()
        # The task serving this request has its own copy of the context: nothing to unbind.
        structlog.contextvars.bind_contextvars(request_id=rid)
        status = 500
        try:
            project = head.project
            if self.hooks:
                await run_hooks(self.hooks, out)
                project = out.headers.get("X-Project-ID")
            target = Target.make(head.method, route, project or "")
            answer = await self.proxy.queue(target, out)
            status = answer.status
            if not answer.request_id:  # nodes echo it; should one not, it is added
                line = _REQUEST_ID_LINE % rid.encode()
                return [answer.head[:-2], line, b"\r\n", answer.body]
            return [answer.head, answer.body]
        except Exception as exc:
            response = error_answer(exc, rid)
            status = response.status
            return [_encode(response, rid)]
        finally:
            self.recorder.record(head.method, route.template, status, time.perf_counter() - started)


def _encode(response: web.Response, rid: str) -> bytes:
    assert isinstance(response.body, bytes)
    headers = [*response.headers.items(), (REQUEST_ID, rid)]
    return encode_response(response.status, response.reason, headers, response.body)
