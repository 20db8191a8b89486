"""A lean HTTP/1.1 client for webhooks: one POST, its answer's status, keep-alive connections.

A deliverer sends a notification per posted message, so the client's cost per request is the
cost of a notification: aiohttp's client spends more CPU per request than the node spends on a
post. This one writes the request in one buffer and reads the answer with a stream reader
(Content-Length, chunked, or to the end), keeping connections open per (scheme, host, port).
A request that finds its reused connection closed by the server before any answer is sent
again once on a new connection (a POST that never reached the subscriber).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

IDLE_PER_ORIGIN = 64  # keep-alive connections kept per (scheme, host, port)
MAX_HEAD = 64 * 1024
Origin = tuple[str, str, int]


class HttpError(Exception):
    """The request could not be sent or its answer read."""


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
    def __init__(self) -> None:
        self._idle: dict[Origin, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
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
        for attempt in range(2):
            reader, writer, reused = await self._connect(t.origin)
            try:
                writer.write(request)
                status, keep = await _answer(reader)
            except asyncio.IncompleteReadError as exc:
                writer.close()
                if reused and attempt == 0 and not exc.partial:
                    continue  # the server had closed the idle connection: a new one
                raise HttpError("the connection closed before an answer") from None
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                writer.close()
                raise HttpError(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                writer.close()
                raise
            if keep and len(self._idle.setdefault(t.origin, [])) < IDLE_PER_ORIGIN:
                self._idle[t.origin].append((reader, writer))
            else:
                writer.close()
            return status
        raise HttpError("unreachable")  # pragma: no cover

    async def _connect(
        self, origin: Origin
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        idle = self._idle.get(origin)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        scheme, host, port = origin
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self._tls if scheme == "https" else None, limit=MAX_HEAD
            )
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        return reader, writer, False

    async def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer whole; its status, and whether the connection may be used again."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
        if not 100 <= status < 200:
            break  # an interim answer (1xx) is followed by the real one
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    if "chunked" in fields.get("transfer-encoding", "").lower():
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
    elif "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif status not in (204, 304):
        await reader.read()  # to the end: the connection closes with it
        keep = False
    return status, keep
