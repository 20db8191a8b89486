"""A request on the lean path, with the app's middlewares' steps in their order: the request
id, metrics, the error table, the hooks, then the queue handler.

The usual request (no hooks, its placement cached, an idle connection to a node of the
partition) is written to the node at once and answered from the node's answer, in callbacks:
no task, no coroutine. Any other, and any usual one whose node fenced it or lost it, runs the
whole request path (`Proxy.queue`, `Proxy.forward`) in a task, from where it stands.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable, Collection, Coroutine, Sequence

import structlog
from aiohttp import web

from catalog.records import Partition, Placement
from ground.metrics import Recorder
from ground.requestid import REQUEST_ID
from proxy.errors import PartitionUnavailable, error_answer
from proxy.forward import FORWARDED, NODE_RETRIES, STATUS_CLASSES, Outgoing
from proxy.handler import Proxy
from proxy.hooks import Hook, Release, release_all, run_hooks
from proxy.http1 import RequestHead, encode_response, parse_lines
from proxy.nodes import Node
from proxy.routing import QueueRoute, Target, match_queue_route
from proxy.upstream import Answer, Lost

Reply = Callable[[list[bytes]], None]
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
        self.cache = proxy.router.cache
        self.pools = proxy.forwarder.pools
        self.upstreams = proxy.forwarder.upstreams
        self.tasks: set[asyncio.Task[None]] = set()

    def route(self, head: RequestHead) -> QueueRoute | None:
        """The queue route of a request; None leaves it to aiohttp's server."""
        return match_queue_route(head.target.partition("?")[0])

    def start(
        self, head: RequestHead, route: QueueRoute, body: bytes, reply: Reply
    ) -> asyncio.Task[None] | None:
        """Answer one request through `reply` (called once, never before this returns).

        Returns the task that runs the whole request path, when the usual one did not do.
        """
        request = _Request(self, head, route, body, reply)
        if not self.hooks and request.send():
            return None
        return self.run(request.run())

    def run(self, coroutine: Coroutine[None, None, None]) -> asyncio.Task[None]:
        """A task for the whole request path, kept until it is done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _Request:
    """One request on the lean path, from its head to its answer's bytes."""

    __slots__ = (
        "lean",
        "node",
        "out",
        "partition",
        "placement",
        "project",
        "reply",
        "rid",
        "route",
        "started",
        "target",
    )

    def __init__(
        self, lean: LeanPath, head: RequestHead, route: QueueRoute, body: bytes, reply: Reply
    ) -> None:
        self.started = time.perf_counter()
        self.lean = lean
        self.route = route
        self.reply = reply
        self.project = head.project
        rid = head.request_id
        if head.verbatim:
            verbatim = head.lines
            if rid is None:
                rid = new_request_id()
                verbatim += _REQUEST_ID_LINE % rid.encode()
            self.out = Outgoing(head.method, head.target, None, body, verbatim)
        else:
            self.out = Outgoing(head.method, head.target, parse_lines(head.lines), body)
        if not rid:  # absent or empty: one is made, as the request id middleware does
            rid = self.out.headers[REQUEST_ID] = new_request_id()
        self.rid = rid
        self.target = Target.make(head.method, route, self.project or "")
        self.placement: Placement | None = None
        self.partition: Partition | None = None
        self.node: Node | None = None

    # --- the usual path --------------------------------------------------------------------

    def send(self) -> bool:
        """Write the request to a node now, if nothing needs waiting for; else False."""
        lean, target = self.lean, self.target
        placement = lean.cache.cached(target.project, target.queue)
        if not isinstance(placement, Placement) or target.deletes:
            return False  # cold, never placed (placing it waits for etcd), or unplaced after
        partition = lean.cache.partitions.get(placement.partition)
        if partition is None:
            return False
        node = lean.pools.pool(partition).choose()
        if node is None:
            return False
        conn = lean.upstreams.idle(node.url)
        if conn is None:
            return False
        lean.proxy.router.hits.inc()  # the cache's hit, counted as Router.placement does
        self.placement, self.partition, self.node = placement, partition, node
        node.outstanding += 1
        conn.send(self.out.head(node.host_line), self.out.body, self.out.method, self._answered)
        return True

    def _answered(self, answer: Answer | None, exc: Exception | None) -> None:
        node, partition = self.node, self.partition
        assert node is not None and partition is not None
        node.outstanding -= 1
        try:
            if answer is not None:
                FORWARDED.add((partition.name, STATUS_CLASSES[answer.status // 100]))
                if answer.fence is None:
                    self._finish(answer.status, self._relayed(answer))
                    return
                self.lean.run(self.run(fenced=(partition, answer)))
            elif isinstance(exc, Lost) and self.out.replayable:
                NODE_RETRIES.labels(partition.name, "idempotent").inc()
                self.lean.run(self.run(exclude=(node.url,)))
            else:
                raise PartitionUnavailable(
                    f"The connection to partition {partition.name} was lost; the request "
                    "may or may not have been applied."
                )
        except Exception as error:
            with structlog.contextvars.bound_contextvars(request_id=self.rid):
                response = error_answer(error, self.rid)
            self._finish(response.status, [_encode(response, self.rid)])

    # --- the whole path ----------------------------------------------------------------------

    async def run(
        self, fenced: tuple[Partition, Answer] | None = None, exclude: Collection[str] = ()
    ) -> None:
        """The whole request path, in a task: from the start, or after the usual path's try."""
        # The task serving this request has its own copy of the context: nothing to unbind.
        structlog.contextvars.bind_contextvars(request_id=self.rid)
        status, parts = 500, []
        releases: list[Release] = []
        try:
            proxy, out = self.lean.proxy, self.out
            if fenced is not None:
                answer = await proxy.forward(self.target, out, self.placement, fenced=fenced)
            else:
                if self.lean.hooks:
                    releases = await run_hooks(self.lean.hooks, out)
                    project = out.headers.get("X-Project-ID") or ""
                    self.target = Target.make(out.method, self.route, project)
                answer = await proxy.queue(self.target, out, exclude)
            status, parts = answer.status, self._relayed(answer)
        except Exception as exc:
            response = error_answer(exc, self.rid)
            status, parts = response.status, [_encode(response, self.rid)]
        finally:
            release_all(releases)  # also when the task is cancelled (the client went away)
        self._finish(status, parts)

    # ------------------------------------------------------------------------------------------

    def _relayed(self, answer: Answer) -> list[bytes]:
        if answer.request_id:
            return [answer.head, answer.body]
        # Nodes echo the request id; should one not, it is added.
        return [answer.head[:-2], _REQUEST_ID_LINE % self.rid.encode(), b"\r\n", answer.body]

    def _finish(self, status: int, parts: list[bytes]) -> None:
        seconds = time.perf_counter() - self.started
        self.lean.recorder.record(self.out.method, self.route.template, status, seconds)
        self.reply(parts)


def _encode(response: web.Response, rid: str) -> bytes:
    assert isinstance(response.body, bytes)
    headers = [*response.headers.items(), (REQUEST_ID, rid)]
    return encode_response(response.status, response.reason, headers, response.body)
