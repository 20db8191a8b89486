"""A request on the lean path, through the steps of `proxy.steps` in their order (the request
id, metrics, the error table, the hooks), then the request path (`proxy.handler`).

The usual request (no hooks, its placement cached, an idle connection to a node of the
partition) is written to the node at once and answered from the node's answer, in callbacks:
no task, no coroutine. Any other, and any usual one whose node fenced it or lost it, runs the
whole request path (`RequestPath.queue`, `RequestPath.forward`) in a task, from where it stands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine

import structlog

from catalog.records import Partition, Placement
from ground.requestid import REQUEST_ID
from proxy.forward import Outgoing
from proxy.handler import RequestPath
from proxy.hooks import Release
from proxy.http1 import RequestHead, parse_lines
from proxy.routing import QueueRoute, Target, match_queue_route
from proxy.steps import Steps
from proxy.upstream import Answer, Lost

Reply = Callable[[list[bytes]], None]
_REQUEST_ID_LINE = b"%s: %%s\r\n" % REQUEST_ID.encode()
_ANSWER_REQUEST_ID_LINE = b"%s: %%s\r\n" % REQUEST_ID.lower().encode()  # Zaqar's case


class LeanPath:
    """Queue routes, served without aiohttp's request objects, router or middleware chain."""

    def __init__(self, path: RequestPath, steps: Steps) -> None:
        self.path = path
        self.steps = steps
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
        if not self.steps.hooks and request.send():
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
        "out",
        "partition",
        "placement",
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
        given = head.request_id
        rid = lean.steps.request_id(given)
        if head.verbatim:
            verbatim = head.lines
            if given is None:  # absent: its line is added to the head as it came
                verbatim += _REQUEST_ID_LINE % rid.encode()
                given = rid
            self.out = Outgoing(head.method, head.target, None, body, verbatim)
        else:
            self.out = Outgoing(head.method, head.target, parse_lines(head.lines), body)
        if not given:  # absent or empty: the one made goes on
            self.out.headers[REQUEST_ID] = rid
        self.rid = rid
        self.target = Target.make(head.method, route, head.project or "")
        self.placement: Placement | None = None  # once found in the cache (a counted hit)
        self.partition: Partition | None = None  # once sent to a node of it at once

    # --- the usual path --------------------------------------------------------------------

    def send(self) -> bool:
        """Write the request to a node now, if nothing needs waiting for; else False."""
        target = self.target
        if target.deletes:
            return False  # its placement goes after the answer: the whole path
        path = self.lean.path
        placement = path.router.cached(target.project, target.queue)
        if not isinstance(placement, Placement):
            return False  # cold, or never placed (placing it waits for etcd)
        self.placement = placement
        partition = self.partition = path.router.cache.partitions.get(placement.partition)
        return partition is not None and path.forwarder.send_now(partition, self.out, self._settled)

    def _settled(self, answer: Answer | None, exc: Exception | None, node_url: str) -> None:
        if answer is not None:
            if answer.fence is None:
                self._finish(answer.status, self._relayed(answer))
            else:
                assert self.partition is not None
                self.lean.run(self.run(fenced=(self.partition, answer)))
        elif isinstance(exc, Lost):  # to be sent again (counted)
            self.lean.run(self.run(exclude=(node_url,)))
        else:
            assert exc is not None
            with structlog.contextvars.bound_contextvars(request_id=self.rid):
                error = self.lean.steps.error(exc, self.rid)
            self._finish(error.status, [error.encode(self.rid)])

    # --- the whole path ----------------------------------------------------------------------

    async def run(
        self, fenced: tuple[Partition, Answer] | None = None, exclude: Collection[str] = ()
    ) -> None:
        """The whole request path, in a task: from the start, or after the usual path's try."""
        # The task serving this request has its own copy of the context: nothing to unbind.
        structlog.contextvars.bind_contextvars(request_id=self.rid)
        status, parts = 500, []
        releases: list[Release] = []
        steps, path, out = self.lean.steps, self.lean.path, self.out
        try:
            if self.placement is not None:  # the usual path found it (and counted the hit)
                answer = await path.forward(
                    self.target, out, self.placement, fenced=fenced, exclude=exclude
                )
            else:
                if steps.hooks:
                    releases = await steps.admit(out)
                    project = out.headers.get("X-Project-ID") or ""
                    self.target = Target.make(out.method, self.route, project)
                answer = await path.queue(self.target, out, exclude)
            status, parts = answer.status, self._relayed(answer)
        except Exception as exc:
            error = steps.error(exc, self.rid)
            status, parts = error.status, [error.encode(self.rid)]
        finally:
            steps.release(releases)  # also when the task is cancelled (the client went away)
        self._finish(status, parts)

    # ------------------------------------------------------------------------------------------

    def _relayed(self, answer: Answer) -> list[bytes]:
        if answer.request_id:
            return [answer.head, answer.body]
        # Nodes echo the request id; should one not, it is added.
        return [answer.head[:-2], _ANSWER_REQUEST_ID_LINE % self.rid.encode(), b"\r\n", answer.body]

    def _finish(self, status: int, parts: list[bytes]) -> None:
        self.lean.steps.record(self.out.method, self.route.template, status, self.started)
        self.reply(parts)
