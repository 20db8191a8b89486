"""Connections to one partition's PostgreSQL: settings from the URI, the pool, the error edge.

SQLAlchemy 2's async engine (asyncpg dialect) owns the pool, the URL and the connections'
lifecycle: a connection that broke (the server restarted) is invalidated and the pool opens a
new one on the next checkout, so the node recovers without a restart. Statements run on the
asyncpg connection underneath (`driver_connection`): SQLAlchemy's statement layer costs more than
a hot statement itself here (BENCHMARKS.md, "PostgreSQL driver" has the measurement), and so
does a checkout from its pool: connections are leased from the pool once and kept between
requests (`Database._checkout`). asyncpg prepares each statement once per connection and reuses
it.

Settings in the URI's query string (removed before the URI reaches the dialect):

- `pool_size` (default 10): connections per node process; `pool_timeout` (seconds, default 5):
  how long a request waits for one before it answers 503.
- `statement_timeout` (milliseconds, default 5000; 0 for none): the server cancels a statement
  that runs longer; `connect_timeout` (seconds, default 5).
- `schema` (default `public`): the schema the partition's tables live in (several partitions may
  share one database, a schema each).
- TLS, as libpq names it: `sslmode` (`disable`, `allow`, `prefer`, `require`, `verify-ca`,
  `verify-full`), `sslrootcert`, `sslcert`, `sslkey` (file paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from node.errors import StorageUnavailable

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# SQLSTATE classes that mean the session is gone: connection exceptions, operator intervention
# (the server shutting down or restarting).
BROKEN = ("08", "57P")


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """What a `postgresql://` URI says: where to connect, and how."""

    url: str  # postgresql+asyncpg://..., without our query parameters
    pool_size: int = 10
    pool_timeout: float = 5.0
    statement_timeout: int = 5000
    connect_timeout: float = 5.0
    schema: str = "public"
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None

    @classmethod
    def from_uri(cls, uri: str) -> PostgresSettings:
        parts = urlsplit(uri)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError(f"not a postgresql:// URI: {uri!r}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        own = {key: query.pop(key) for key in list(query) if key in _OPTIONS}
        url = urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), ""))
        settings: dict[str, Any] = {}
        for key, value in own.items():
            try:
                settings[key] = _OPTIONS[key](value)
            except ValueError as exc:
                raise ValueError(f"postgresql URI: bad {key}={value!r}") from exc
        found = cls(url=url, **settings)
        found.check()
        return found

    def check(self) -> None:
        if self.pool_size < 1 or self.pool_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("postgresql URI: pool_size, pool_timeout, connect_timeout > 0")
        if self.statement_timeout < 0:
            raise ValueError("postgresql URI: statement_timeout is >= 0 (milliseconds)")
        if not SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(f"postgresql URI: schema is a lowercase identifier: {self.schema!r}")
        if self.sslmode is not None and self.sslmode not in SSL_MODES:
            raise ValueError(f"postgresql URI: sslmode is one of {', '.join(SSL_MODES)}")

    def ssl(self) -> ssl.SSLContext | str | None:
        """What asyncpg's `ssl` argument takes: a mode, or a context when files are named."""
        if not (self.sslrootcert or self.sslcert):
            return self.sslmode
        context = ssl.create_default_context(cafile=self.sslrootcert)
        if self.sslcert:
            context.load_cert_chain(self.sslcert, self.sslkey)
        if self.sslmode != "verify-full":
            context.check_hostname = False
        if self.sslmode in (None, "allow", "prefer", "require"):
            context.verify_mode = ssl.CERT_NONE if not self.sslrootcert else ssl.CERT_REQUIRED
        return context


_OPTIONS: dict[str, Any] = {
    "pool_size": int,
    "pool_timeout": float,
    "statement_timeout": int,
    "connect_timeout": float,
    "schema": str,
    "sslmode": str,
    "sslrootcert": str,
    "sslcert": str,
    "sslkey": str,
}


class Database:
    """The pool of one partition's connections; every statement runs through `session` or
    `transaction`, which translate backend failures into `StorageUnavailable`."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        server_settings = {
            "search_path": settings.schema,
            "statement_timeout": str(settings.statement_timeout),
            "application_name": "marconi-node",
            # Every statement of the node finds rows by key or walks one queue in marker order
            # up to a limit; a bitmap scan serves neither (it reads the whole queue, then sorts
            # it), yet while a table has no statistics the planner took one for a claim
            # (BENCHMARKS.md, PostgreSQL driver).
            "enable_bitmapscan": "off",
        }
        connect_args: dict[str, Any] = {
            "server_settings": server_settings,
            "timeout": settings.connect_timeout,
            # asyncpg's own client-side limit, a little above the server's.
            "command_timeout": settings.statement_timeout / 1000 + 5
            if settings.statement_timeout
            else None,
        }
        if (tls := settings.ssl()) is not None:
            connect_args["ssl"] = tls
        self.engine: AsyncEngine = create_async_engine(
            settings.url,
            pool_size=settings.pool_size,
            max_overflow=0,
            pool_timeout=settings.pool_timeout,
            connect_args=connect_args,
        )
        self._leases = asyncio.Semaphore(settings.pool_size)
        self._idle: list[tuple[AsyncConnection, Any]] = []

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, each statement its own transaction."""
        async with self._checkout() as (_, conn):
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self, isolation: str = "read_committed") -> AsyncIterator[Any]:
        """A pooled connection inside one transaction, committed when the block ends."""
        async with self._checkout() as (_, conn), conn.transaction(isolation=isolation):
            yield conn

    @contextlib.asynccontextmanager
    async def _checkout(self) -> AsyncIterator[tuple[AsyncConnection, Any]]:
        """A connection leased from SQLAlchemy's pool, kept between requests: a checkout from
        the pool costs more than a hot statement (BENCHMARKS.md), so at most `pool_size`
        connections are leased once and handed from request to request. A broken one goes
        back to the pool invalidated, with every idle lease (a server restart broke them all)."""
        if self._leases.locked():  # every connection busy: wait a while for one
            try:
                async with asyncio.timeout(self.settings.pool_timeout):
                    await self._leases.acquire()
            except TimeoutError:
                raise StorageUnavailable("postgresql: no connection free in time") from None
        else:
            await self._leases.acquire()  # at once, and without a timer to set and cancel
        try:
            if self._idle:
                wrapper, conn = self._idle.pop()
            else:
                wrapper = await self.engine.connect()
                try:
                    conn = (await wrapper.get_raw_connection()).driver_connection
                except BaseException:
                    await wrapper.close()
                    raise
            try:
                yield wrapper, conn
            except BaseException as exc:
                if _broken(exc, conn):
                    await self._discard(wrapper)
                    while self._idle:
                        await self._discard(self._idle.pop()[0])
                else:
                    self._idle.append((wrapper, conn))
                raise
            self._idle.append((wrapper, conn))
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"postgresql: {exc}") from exc
        except (OSError, TimeoutError, sqlalchemy.exc.SQLAlchemyError) as exc:
            raise StorageUnavailable(f"postgresql: {type(exc).__name__}: {exc}") from exc
        finally:
            self._leases.release()

    @staticmethod
    async def _discard(wrapper: AsyncConnection) -> None:
        with contextlib.suppress(Exception):
            await wrapper.invalidate()
        with contextlib.suppress(Exception):
            await wrapper.close()

    async def close(self) -> None:
        while self._idle:
            wrapper, _ = self._idle.pop()
            with contextlib.suppress(Exception):
                await wrapper.close()
        await self.engine.dispose()


def _broken(exc: BaseException, conn: Any) -> bool:
    """Is the connection unusable after `exc`? Then the pool must not hand it out again."""
    if isinstance(exc, asyncio.CancelledError):
        return True  # a statement may still be running on it
    if conn.is_closed():
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(BROKEN)
    return isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError))
