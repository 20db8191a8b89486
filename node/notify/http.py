"""A lean HTTP/1.1 client for webhooks: one POST, its answer's status, pipelined keep-alive
connections.

A deliverer sends a notification per posted message, so the client's cost per request is the
cost of a notification: aiohttp's client spends more CPU per request than the node spends on a
post, and one write and one read per request cost more than the rest of it. Here requests to
one origin (scheme, host, port) share a few connections and are pipelined (RFC 9112 §9.3.2):
the requests made during one turn of the event loop leave in one write, and one read takes
every answer that arrived, parsed by a small protocol (Content-Length, chunked, or to the end;
interim 1xx answers skipped). A request whose connection closed before any byte of its answer
arrived (a server closing an idle or a `Connection: close` connection, behind which others were
pipelined) is sent once more on a new connection: at least once allows it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import cast
from urllib.parse import unquote, urlsplit

CONNECTIONS_PER_ORIGIN = 8  # connections kept open per (scheme, host, port)
PIPELINE = 32  # requests awaiting their answers on one connection before another is opened
MAX_HEAD = 64 * 1024
Origin = tuple[str, str, int]


class HttpError(Exception):
    """The request could not be sent or its answer read."""


class Unanswered(HttpError):
    """The connection closed before any byte of the answer: the request may be sent again."""


@dataclass(frozen=True, slots=True)
class Target:
    origin: Origin
    host_header: str
    path: str
    authorization: str | None


@lru_cache(maxsize=4096)
def target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise HttpError(str(exc)) from None
    host = parts.netloc.rsplit("@", 1)[-1]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authorization = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(user_pass.encode()).decode()
    return Target((parts.scheme, parts.hostname, port), host, path, authorization)


def _safe(text: str) -> bool:
    return "\r" not in text and "\n" not in text


class HttpClient:
    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout  # seconds to connect, and for each answer to arrive
        self._pools: dict[Origin, list[Connection]] = {}
        self._opening: dict[Origin, asyncio.Future[HttpError | None]] = {}
        self._tls = ssl.create_default_context()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body` to `url`; the answer's status. Raises `HttpError`."""
        t = target(url)
        lines = [f"POST {t.path} HTTP/1.1", f"Host: {t.host_header}"]
        if t.authorization:
            lines.append(f"Authorization: {t.authorization}")
        lines.extend(
            f"{name}: {value}"
            for name, value in headers.items()
            if _safe(name) and _safe(value) and ":" not in name and name.lower() != "host"
        )
        lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
        try:
            return await self._send(t.origin, request)
        except Unanswered:
            return await self._send(t.origin, request)  # once more, on another connection

    async def _send(self, origin: Origin, request: bytes) -> int:
        connection = await self._connection(origin)
        answer = connection.send(request)
        try:
            return await answer
        except asyncio.CancelledError:
            connection.abort()  # the answers behind this one would wait for it
            raise

    async def _connection(self, origin: Origin) -> Connection:
        """The open connection with the fewest requests in flight, unless all have `PIPELINE`
        and there is room for one more; one connection is opened at a time per origin."""
        while True:
            pool = self._pools.setdefault(origin, [])
            pool[:] = [c for c in pool if c.usable]
            best = min(pool, key=Connection.in_flight, default=None)
            if best is not None and (
                best.in_flight() < PIPELINE or len(pool) >= CONNECTIONS_PER_ORIGIN
            ):
                return best
            opening = self._opening.get(origin)
            if opening is None:
                break
            failed = await asyncio.shield(opening)
            if failed is not None:  # the origin did not take a connection just now
                raise failed
        opened: asyncio.Future[HttpError | None] = asyncio.get_running_loop().create_future()
        self._opening[origin] = opened
        try:
            connection = await self._open(origin)
        except HttpError as exc:
            opened.set_result(exc)
            raise
        finally:
            del self._opening[origin]
            if not opened.done():
                opened.set_result(None)
        pool.append(connection)
        return connection

    async def _open(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(self.timeout),
                    host,
                    port,
                    ssl=self._tls if scheme == "https" else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise HttpError(f"no connection within {self.timeout} s") from None
        return connection

    async def close(self) -> None:
        for pool in self._pools.values():
            for connection in pool:
                connection.close()
        self._pools.clear()


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests written in order, their answers read in order.
    One timer per connection, not one per request, watches that the oldest request in flight
    is answered within `timeout` seconds; if not, the connection is given up."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._sent: deque[float] = deque()  # when each request waiting was sent (loop time)
        self._watch: asyncio.TimerHandle | None = None
        self.usable = True  # False once closing, or once the server said it will close
        self._waiting: deque[asyncio.Future[int]] = deque()  # written, not yet answered
        self._outgoing: list[bytes] = []  # to leave in one write at the end of this loop turn
        self._buffer = bytearray()
        self._partial = False  # some bytes of the first waiting request's answer arrived
        self._to_end: int | None = None  # the status of an answer whose body runs to the end

    def in_flight(self) -> int:
        return len(self._waiting)

    def send(self, request: bytes) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[int] = loop.create_future()
        self._waiting.append(answer)
        self._sent.append(loop.time())
        if self._watch is None:
            self._watch = loop.call_at(self._sent[0] + self.timeout, self._check)
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append(request)
        return answer

    def _check(self) -> None:
        self._watch = None
        if not self._sent:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._sent[0] >= self.timeout:
            self._fail(HttpError(f"no answer within {self.timeout} s"))
        else:
            self._watch = loop.call_at(self._sent[0] + self.timeout, self._check)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._to_end is not None:
            return  # the rest of a body that runs to the end of the connection
        self._buffer += data
        self._partial = True
        try:
            while self._waiting and self._to_end is None and self._answer():
                self._partial = bool(self._buffer)
        except (ValueError, IndexError) as exc:
            self._fail(HttpError(f"a malformed answer: {exc}"))

    def _answer(self) -> bool:
        """Take one whole answer off the buffer and settle its request; False until whole."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ValueError("head too long")
            return False
        lines = buffer[:end].decode("latin-1").split("\r\n")
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
        if 100 <= status < 200:  # an interim answer: the real one follows
            del buffer[: end + 4]
            return True
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        start = end + 4
        if "chunked" in fields.get("transfer-encoding", "").lower():
            stop = _chunked_end(buffer, start)
            if stop < 0:
                return False
        elif "content-length" in fields:
            stop = start + int(fields["content-length"])
            if len(buffer) < stop:
                return False
        elif status in (204, 304):
            stop = start
        else:  # the body runs to the end of the connection
            self._to_end, self.usable = status, False
            buffer.clear()
            return False
        del buffer[:stop]
        self._settle(status)
        if not keep:
            self.usable = False  # the requests pipelined behind go again elsewhere
        return True

    def _settle(self, status: int) -> None:
        self._sent.popleft()
        answer = self._waiting.popleft()
        if not answer.done():
            answer.set_result(status)

    def eof_received(self) -> bool | None:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self._to_end is not None and self._waiting:
            self._settle(self._to_end)
            self._partial = False
        self._fail(None)

    def _fail(self, error: HttpError | None) -> None:
        """Fail every request still waiting: the first with `error` (else as cut off in its
        answer or unanswered), the rest as unanswered."""
        self.usable = False
        first = True
        self._sent.clear()
        while self._waiting:
            answer = self._waiting.popleft()
            if first and error is None and self._partial:
                error = HttpError("the connection closed in the middle of an answer")
            if not answer.done():
                answer.set_exception(
                    error if first and error else Unanswered("the connection closed unanswered")
                )
            first = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


def _chunked_end(buffer: bytearray, start: int) -> int:
    """Where a chunked body starting at `start` ends (trailers included); -1 if not whole yet."""
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return -1
        size = int(bytes(buffer[at:eol]).split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            break
        at += size + 2
        if len(buffer) < at:
            return -1
    while True:  # trailers, then the empty line
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return -1
        if eol == at:
            return eol + 2
        at = eol + 2
