"""Forwarding a request to a node of a partition, as bytes, over one keep-alive session.

The body is read once and never parsed. A request that failed before it reached a node
(connection refused, connect timeout) is sent to another node of the partition; one that may
have reached a node is sent again only if its method is idempotent, so a message post is never
replayed. Answers are relayed as they came: small ones buffered, large ones streamed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import Counter
from yarl import URL

from catalog.records import Partition
from node.api.requestid import REQUEST_ID, request_id
from proxy.errors import PartitionUnavailable
from proxy.nodes import Node, NodePool, NodePools

FENCE = "X-Marconi-Fence"
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the ones
# aiohttp sets itself for the new connection and body.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
        "Expect",
    )
)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
BUFFERED = 256 * 1024  # answers up to this size are read whole; larger ones are streamed
CHUNK = 64 * 1024
LARGE_BODY = 1024 * 1024

FORWARDED = Counter(
    "marconi_proxy_forwarded_total",
    "Requests forwarded to a partition, by status class.",
    ["partition", "status"],
)
NODE_RETRIES = Counter(
    "marconi_proxy_node_retries_total",
    "Requests sent again to another node of a partition.",
    ["partition", "reason"],
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request as it will be sent on: method, raw path and query, headers, body bytes."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes

    @classmethod
    async def read(cls, request: web.Request) -> Outgoing:
        headers = copy_headers(request.headers)
        headers[REQUEST_ID] = request_id(request)
        body = await request.read() if request.body_exists else b""
        return cls(request.method, request.raw_path, headers, body)

    def payload(self) -> bytes | io.BytesIO | None:
        """The body for one attempt (aiohttp wants large bodies as a file object)."""
        if not self.body:
            return None
        return io.BytesIO(self.body) if len(self.body) > LARGE_BODY else self.body

    @property
    def replayable(self) -> bool:
        return self.method in IDEMPOTENT


@dataclass(frozen=True, slots=True)
class Upstream:
    """A node's answer whose body is not read yet."""

    node: Node
    response: aiohttp.ClientResponse

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def fence(self) -> str | None:
        """The node's fencing reason ("frozen", "moved") when it refused the queue."""
        return self.response.headers.get(FENCE) if self.response.status == 503 else None


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, pools: NodePools) -> None:
        self.session = session
        self.pools = pools

    @contextlib.asynccontextmanager
    async def exchange(self, partition: Partition, out: Outgoing) -> AsyncIterator[Upstream]:
        """Send `out` to a node of `partition`; the answer is released on exit."""
        async with self.exchange_with(self.pools.pool(partition), out) as upstream:
            yield upstream

    @contextlib.asynccontextmanager
    async def exchange_with(self, pool: NodePool, out: Outgoing) -> AsyncIterator[Upstream]:
        tried: set[str] = set()
        while True:
            node = pool.choose(exclude=tried)
            if node is None:
                raise PartitionUnavailable(
                    f"No node of partition {pool.partition} could be reached. "
                    "Please try again in a few seconds."
                )
            tried.add(node.url)
            with node.busy():
                try:
                    response = await self.session.request(
                        out.method,
                        URL(node.url + out.path, encoded=True),
                        headers=out.headers,
                        data=out.payload(),
                        allow_redirects=False,
                    )
                except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                    node.mark(False)  # never reached the node: safe to send elsewhere
                    NODE_RETRIES.labels(pool.partition, "not_sent").inc()
                    continue
                except (aiohttp.ClientError, TimeoutError):
                    if not out.replayable:
                        raise PartitionUnavailable(
                            f"The connection to partition {pool.partition} was lost; the request "
                            "may or may not have been applied."
                        ) from None
                    NODE_RETRIES.labels(pool.partition, "idempotent").inc()
                    continue
                try:
                    FORWARDED.labels(pool.partition, f"{response.status // 100}xx").inc()
                    yield Upstream(node, response)
                finally:
                    response.release()
                return

    async def relay(self, request: web.Request, upstream: Upstream) -> web.StreamResponse:
        """The node's answer to the client: status, headers and body as they came.

        Buffered answers are sent after the handler returns (a DELETE's 204 only once the
        placement is gone); streamed ones go out at once.
        """
        response = upstream.response
        headers = copy_headers(response.headers)
        length = response.content_length
        bodiless = request.method == "HEAD" or response.status in (204, 304)
        if bodiless or (length is not None and length <= BUFFERED):
            body = await response.read()
            return web.Response(status=response.status, headers=headers, body=body or None)
        streamed = web.StreamResponse(status=response.status, headers=headers)
        if length is not None:
            streamed.content_length = length
        await streamed.prepare(request)
        async for chunk in response.content.iter_chunked(CHUNK):
            await streamed.write(chunk)
        await streamed.write_eof()
        return streamed


def session(connect_timeout: float, upstream_timeout: float) -> aiohttp.ClientSession:
    """The one client session of a proxy: a keep-alive pool to every node, bytes untouched."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=upstream_timeout
        ),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def copy_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)
