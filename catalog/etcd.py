"""The etcd `CatalogStore`, through aetcd (asyncio gRPC). etcd's errors are translated here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.rtypes
import aetcd.utils
import grpc

from catalog import scan
from catalog.errors import CatalogUnavailable, Compacted, Conflict, LeaseExpired
from catalog.records import Event, Lookup, Page, Snapshot, Versioned
from ground import env

# gRPC's own default: the largest answer the client accepts. Every prefix read is paged, so none
# depends on it; a test sets it small (MARCONI_ETCD_MAX_MESSAGE) to prove that.
MAX_MESSAGE = 4 * 1024 * 1024
# A page's window of the key space aims at holding from 1/WINDOW_PAGES to WINDOW_PAGES pages.
WINDOW_PAGES = 4


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """`http://127.0.0.1:2379,http://127.0.0.1:22379` (or bare host:port) as (host, port) pairs."""
    endpoints = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        parsed = urlsplit(part if "://" in part else f"http://{part}")
        endpoints.append((parsed.hostname or "127.0.0.1", parsed.port or 2379))
    if not endpoints:
        raise ValueError(f"no etcd endpoint in {url!r}")
    return endpoints


def _grpc_target(endpoints: list[tuple[str, int]]) -> tuple[str, int]:
    """aetcd dials f"{host}:{port}"; several members become one gRPC `ipv4:` target list, so
    the channel fails over between them by itself."""
    if len(endpoints) == 1:
        return endpoints[0]
    *rest, (last_host, last_port) = endpoints
    head = ",".join(f"{h}:{p}" for h, p in rest)
    return f"ipv4:{head},{last_host}", last_port


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except aetcd.exceptions.RevisionCompactedError as exc:
        raise Compacted(str(exc)) from exc
    except grpc.RpcError as exc:
        if _compacted(exc):  # a range at a revision gone (raw stub calls skip aetcd's mapping)
            raise Compacted(str(exc)) from exc
        raise CatalogUnavailable(f"etcd: {type(exc).__name__}: {exc}") from exc
    except (aetcd.exceptions.ClientError, OSError, TimeoutError) as exc:
        if isinstance(exc, aetcd.exceptions.ClientError) and _lease_not_found(exc):
            raise LeaseExpired(str(exc)) from exc
        raise CatalogUnavailable(f"etcd: {type(exc).__name__}: {exc}") from exc


def _lease_not_found(exc: aetcd.exceptions.ClientError) -> bool:
    cause = exc.__cause__
    return (
        isinstance(cause, aetcd.rpc.AioRpcError)
        and cause.code() == grpc.StatusCode.NOT_FOUND
        and "lease not found" in (cause.details() or "")
    )


def _compacted(exc: grpc.RpcError) -> bool:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    return (
        callable(code)
        and code() == grpc.StatusCode.OUT_OF_RANGE
        and callable(details)
        and "compacted" in (details() or "")
    )


def _shared(a: bytes, b: bytes) -> int:
    """How many leading bytes `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _prefix_end(prefix: bytes) -> bytes:
    return aetcd.utils.prefix_range_end(prefix)  # type: ignore[no-any-return]


class EtcdStore:
    """`max_message` (bytes) is the largest answer the client accepts, `page_size` the keys per
    page of a whole-prefix read; by default from MARCONI_ETCD_MAX_MESSAGE and
    MARCONI_CATALOG_PAGE, else 4 MiB and 1000 (a placement is about 150 bytes on the wire)."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        *,
        max_message: int | None = None,
        page_size: int | None = None,
    ) -> None:
        host, port = _grpc_target(parse_endpoints(url))
        self.url = url
        self._timeout = timeout
        self.max_message = max_message or env.whole("MARCONI_ETCD_MAX_MESSAGE", MAX_MESSAGE)
        self.page_size = page_size or env.whole("MARCONI_CATALOG_PAGE", scan.PAGE_SIZE)
        self._depths: dict[str, int | None] = {}  # per prefix: the last page's window depth
        self._client = aetcd.Client(
            host=host,
            port=port,
            timeout=timeout,
            # Reconnect quickly after an etcd restart or a leader change (gRPC's default
            # backoff grows to two minutes).
            options={
                "grpc.initial_reconnect_backoff_ms": 100,
                "grpc.min_reconnect_backoff_ms": 100,
                "grpc.max_reconnect_backoff_ms": 1000,
                "grpc.keepalive_time_ms": 10_000,
                "grpc.keepalive_timeout_ms": 5_000,
                "grpc.max_receive_message_length": self.max_message,
            },
        )

    async def get(self, key: str) -> Versioned | None:
        with _translated():
            found = await self._client.get(key.encode())
        if found is None:
            return None
        return Versioned(key, found.value, found.mod_revision, found.create_revision)

    async def lookup(self, key: str) -> Lookup:
        request = aetcd.rpc.RangeRequest(key=key.encode())
        found = await self._range(request)
        value = None
        if found.kvs:
            kv = found.kvs[0]
            value = Versioned(key, kv.value, kv.mod_revision, kv.create_revision)
        return Lookup(value, found.header.revision)

    async def snapshot(self, prefix: str) -> Snapshot:
        return await scan.snapshot(self, prefix, self.page_size)

    async def page(self, prefix: str, start_after: str, limit: int, revision: int = 0) -> Page:
        """Read through windows of the prefix's key space, not the whole rest of it: etcd counts
        every key from a range's start to its end whatever the limit (its answer's `count`), so
        pages over the whole rest of a million keys cost quadratic time (measured: 440 ms for
        one key at the start of 200,000 placements, 2 ms at the end). A window is the keys
        sharing the start key's first `depth` characters; the depth is learned from the counts
        etcd answers, aiming at a few pages a window."""
        end = _prefix_end(prefix.encode())
        key = (start_after + "\0").encode() if start_after else prefix.encode()
        depth = self._depths.get(prefix)
        items: list[Versioned] = []
        more, fresh = False, False
        while len(items) < limit:
            window = end if depth is None else min(end, _prefix_end(key[:depth]))
            request = aetcd.rpc.RangeRequest(
                key=key,
                range_end=window,
                limit=limit - len(items),
                revision=revision,
                # The first page is linearizable (it fixes the revision); the rest read that
                # revision from whichever member answers.
                serializable=revision > 0,
                # No sort order: etcd answers in key order anyway, and asking for one makes it
                # read the whole range before applying the limit.
            )
            found = await self._range(request)
            revision = revision or found.header.revision
            items.extend(
                Versioned(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)
                for kv in found.kvs
            )
            if found.kvs and found.count > WINDOW_PAGES * limit:
                # Too wide: at least as narrow as the block of keys this answer spans.
                spanned = _shared(found.kvs[0].key, found.kvs[-1].key)
                depth = max((depth or len(prefix.encode())) + 1, spanned)
            elif fresh and found.count * WINDOW_PAGES < limit and depth is not None:
                depth = None if depth <= len(prefix.encode()) + 1 else depth - 1  # wider
            fresh = False
            if found.more:
                key, more = found.kvs[-1].key + b"\0", True
            elif window >= end:
                more = False
                break
            else:
                key, more, fresh = window, True, True  # the next window starts at this one's end
        self._depths[prefix] = depth
        return Page(revision, items, more)

    async def _range(self, request: aetcd.rpc.RangeRequest) -> aetcd.rpc.RangeResponse:
        with _translated():
            await self._client.connect()
            return await self._client.kvstub.Range(
                request, timeout=self._timeout, metadata=self._client.metadata
            )

    async def range(self, prefix: str, start_after: str, limit: int) -> list[Versioned]:
        # aetcd's get_range has no limit, so the request is built here (etcd sorts by key).
        start = (start_after + "\0") if start_after else prefix
        request = aetcd.rpc.RangeRequest(
            key=start.encode(),
            range_end=_prefix_end(prefix.encode()),
            limit=limit,
            sort_order=aetcd.rpc.RangeRequest.ASCEND,
            sort_target=aetcd.rpc.RangeRequest.KEY,
        )
        found = await self._range(request)
        return [
            Versioned(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)
            for kv in found.kvs
        ]

    async def create(
        self, key: str, value: bytes, lease: int | None = None
    ) -> tuple[bool, Versioned]:
        raw = key.encode()
        tx = self._client.transactions
        with _translated():
            succeeded, responses = await self._client.transaction(
                compare=[tx.create(raw) == 0],
                success=[tx.put(raw, value, lease=lease)],
                failure=[tx.get(raw)],
            )
        if succeeded:
            revision = responses[0].response_put.header.revision
            return True, Versioned(key, value, revision, revision)
        _value, kv = responses[0][0]
        return False, Versioned(key, kv.value, kv.mod_revision, kv.create_revision)

    async def replace(self, key: str, value: bytes, mod_revision: int) -> Versioned:
        raw = key.encode()
        tx = self._client.transactions
        with _translated():
            succeeded, responses = await self._client.transaction(
                compare=[tx.mod(raw) == mod_revision, tx.create(raw) != 0],
                success=[tx.put(raw, value)],
                failure=[],
            )
        if not succeeded:
            raise Conflict(key)
        revision = responses[0].response_put.header.revision
        return Versioned(key, value, revision)

    async def delete(self, key: str, mod_revision: int) -> None:
        raw = key.encode()
        tx = self._client.transactions
        with _translated():
            succeeded, _ = await self._client.transaction(
                compare=[tx.mod(raw) == mod_revision, tx.create(raw) != 0],
                success=[tx.delete(raw)],
                failure=[],
            )
        if not succeeded:
            raise Conflict(key)

    async def grant_lease(self, ttl: int) -> int:
        with _translated():
            lease = await self._client.lease(ttl)
        return int(lease.id)

    async def refresh_lease(self, lease_id: int) -> None:
        with _translated():
            reply = await self._client.refresh_lease(lease_id)
        # etcd answers a keep-alive of an expired lease with TTL 0 rather than an error.
        if reply is None or reply.TTL <= 0:
            raise LeaseExpired(f"lease {lease_id:x} expired")

    async def revoke_lease(self, lease_id: int) -> None:
        with contextlib.suppress(LeaseExpired), _translated():
            await self._client.revoke_lease(lease_id)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        with _translated():
            watch = await self._client.watch_prefix(prefix.encode(), start_revision=start_revision)
        try:
            with _translated():
                async for event in watch:
                    kv = event.kv
                    deleted = event.kind == aetcd.rtypes.EventKind.DELETE
                    yield Event(kv.key.decode(), None if deleted else kv.value, kv.mod_revision)
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()

    async def close(self, within: float = 5.0) -> None:
        """Close the client; one whose channel does not close within `within` seconds is left
        behind rather than holding up a shutdown."""
        closing = asyncio.ensure_future(self._client.close())
        done, _ = await asyncio.wait({closing}, timeout=within)
        if done:
            with contextlib.suppress(Exception):
                closing.result()
