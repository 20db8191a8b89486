"""Forwarding a request to a node of a partition, as bytes, over pooled keep-alive connections.

The body is read once and never parsed. A request that never reached a node (no connection
could be opened) is sent to another node of the partition; one that may have reached a node is
sent again only if its method is idempotent, so a message post is never replayed. Answers are
relayed as they came, hop-by-hop headers aside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Coroutine

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import Counter

from catalog.records import Partition
from ground.metrics import Tally
from ground.requestid import REQUEST_ID, request_id
from proxy.errors import PartitionUnavailable
from proxy.http1 import HOP_BY_HOP, header_lines, parse_lines, response_headers
from proxy.nodes import Node, NodePool, NodePools
from proxy.upstream import Answer, Lost, NotSent, Upstreams

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

FORWARDED = Tally(
    "marconi_proxy_forwarded",
    "Requests forwarded to a partition, by status class.",
    ["partition", "status"],
)
STATUS_CLASSES = tuple(f"{n}xx" for n in range(10))  # by status // 100, made once
NODE_RETRIES = Counter(
    "marconi_proxy_node_retries_total",
    "Requests sent again to another node of a partition.",
    ["partition", "reason"],
)


class Outgoing:
    """A request as it will be sent on: method, raw path and query, end-to-end headers (the
    request id among them), body bytes.

    From the lean path, the head goes on as the client sent it (`verbatim`: request line and
    header lines, Content-Length among them, Host aside) until something reads or changes
    `headers`; from then on, it is encoded from `headers`.
    """

    __slots__ = ("_headers", "_verbatim", "body", "method", "path")

    def __init__(
        self,
        method: str,
        path: str,
        headers: CIMultiDict[str] | None,
        body: bytes,
        verbatim: bytes | None = None,
    ) -> None:
        assert headers is not None or verbatim is not None
        self.method = method
        self.path = path
        self.body = body
        self._headers = headers
        self._verbatim = verbatim

    @classmethod
    async def read(cls, request: web.Request) -> Outgoing:
        """A request that came through aiohttp's server."""
        headers = copy_headers(request.headers)
        headers[REQUEST_ID] = request_id(request)
        body = request.get(ADMITTED_BODY)
        if body is None:
            body = await request.read() if request.body_exists else b""
        return cls(request.method, request.raw_path, headers, body)

    @property
    def headers(self) -> CIMultiDict[str]:
        if self._headers is None:
            assert self._verbatim is not None
            self._headers = parse_lines(self._verbatim[self._verbatim.find(b"\r\n") + 2 :])
            self._verbatim = None  # the headers may change: encode them from now on
        return self._headers

    def head(self, host_line: bytes) -> bytes:
        """The request head for a node, whose `Host: ...\\r\\n` line is given."""
        if self._verbatim is not None:
            return b"%s%s\r\n" % (self._verbatim, host_line)
        assert self._headers is not None
        sized = self.body or self.method in ("POST", "PUT", "PATCH")
        length = f"Content-Length: {len(self.body)}\r\n" if sized else ""
        start = f"{self.method} {self.path} HTTP/1.1\r\n{length}".encode()
        return b"%s%s%s\r\n" % (start, host_line, header_lines(self._headers))

    @property
    def replayable(self) -> bool:
        return self.method in IDEMPOTENT


# A body the steps read before the hooks (one a hook needs: `proxy.steps`), as the hooks left it.
ADMITTED_BODY = web.RequestKey("admitted_body", bytes)

Settled = Callable[[Answer | None, Exception | None, str], None]
"""Told how a request written at once ended: its answer (counted), or `Lost` when it may be sent
again to another node (the retry counted), or `PartitionUnavailable`; and the node's URL."""


class Forwarder:
    """Sends requests to the nodes of a partition; every answer and every retry is counted here,
    whichever server the request came through."""

    def __init__(self, upstreams: Upstreams, pools: NodePools) -> None:
        self.upstreams = upstreams
        self.pools = pools

    def send_now(self, partition: Partition, out: Outgoing, then: Settled) -> bool:
        """Write `out` to a node of `partition` at once, if one has an idle connection (else
        False, and nothing was sent); `then` is called once, never before this returns."""
        node = self.pools.pool(partition).choose()
        if node is None:
            return False
        conn = self.upstreams.idle(node.url)
        if conn is None:
            return False
        node.outstanding += 1
        # A partial, not a closure: made per request, it costs less to make and to call.
        settled = functools.partial(_settled_now, partition.name, node, out, then)
        conn.send(out.head(node.host_line), out.body, out.method, settled)
        return True

    def send(
        self, partition: Partition, out: Outgoing, exclude: Collection[str] = ()
    ) -> Coroutine[None, None, Answer]:
        """`out` to a node of `partition` (not one of `exclude` first), and its whole answer."""
        return self.send_to(self.pools.pool(partition), out, exclude)

    async def send_to(self, pool: NodePool, out: Outgoing, exclude: Collection[str] = ()) -> Answer:
        tried = list(exclude)
        while True:
            node = pool.choose(exclude=tried)
            if node is None:
                raise PartitionUnavailable(
                    f"No node of partition {pool.partition} could be reached. "
                    "Please try again in a few seconds."
                )
            tried.append(node.url)
            node.outstanding += 1
            try:
                answer = await self.upstreams.exchange(
                    node.url, out.head(node.host_line), out.body, out.method
                )
            except NotSent:
                node.mark(False)  # never reached the node: safe to send elsewhere
                NODE_RETRIES.labels(pool.partition, "not_sent").inc()
                continue
            except Lost:
                refused = _after_loss(pool.partition, out)
                if refused is not None:
                    raise refused from None
                continue
            finally:
                node.outstanding -= 1
            return _answered(pool.partition, answer)


def _settled_now(
    partition: str,
    node: Node,
    out: Outgoing,
    then: Settled,
    answer: Answer | None,
    exc: Exception | None,
) -> None:
    """The end of an exchange `Forwarder.send_now` started."""
    node.outstanding -= 1
    if answer is not None:
        then(_answered(partition, answer), None, node.url)
    else:
        then(None, _after_loss(partition, out) or exc, node.url)


def _answered(partition: str, answer: Answer) -> Answer:
    FORWARDED.add((partition, STATUS_CLASSES[answer.status // 100]))
    return answer


def _after_loss(partition: str, out: Outgoing) -> PartitionUnavailable | None:
    """After a request may have reached a node and its answer was lost: None when it may be
    sent to another node (the retry counted), else the error to answer with."""
    if not out.replayable:
        return PartitionUnavailable(
            f"The connection to partition {partition} was lost; the request "
            "may or may not have been applied."
        )
    NODE_RETRIES.labels(partition, "idempotent").inc()
    return None


def answer_response(answer: Answer) -> web.Response:
    """A node's answer as an aiohttp response, for requests that came through aiohttp's server.

    Sent once the handler returns (a DELETE's 204 only once the placement is gone).
    """
    return web.Response(
        status=answer.status, headers=response_headers(answer.head), body=answer.body or None
    )


def copy_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)
