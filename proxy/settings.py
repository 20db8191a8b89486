"""Proxy settings: a frozen dataclass filled from the environment, then from CLI flags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from catalog.registry import MigrationLimits
from ground import env
from wire.deadlines import Deadlines


class AuthMode(StrEnum):
    """Who the proxy believes a request comes from."""

    NOAUTH = "noauth"  # X-Project-ID and X-Roles as sent: for development, behind a trusted edge
    KEYSTONE = "keystone"  # X-Auth-Token validated with Keystone v3; project and roles from it


class PlacementKey(StrEnum):
    """What the placement policy hashes: each queue on its own, or a tenant's queues together."""

    QUEUE = "queue"  # "project/queue"
    PROJECT = "project"  # "project"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Per-project limits, each counted per proxy process (see proxy/limits.py)."""

    rate: float = 0.0  # requests per second per project; 0 = no rate limit
    burst: int = 0  # requests a project may send at once; 0 = max(1, rate)
    concurrency: int = 0  # requests in flight per project; 0 = no limit
    projects: int = 100_000  # projects tracked at once; the least recently seen are forgotten

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.concurrency > 0

    @property
    def capacity(self) -> float:
        return float(self.burst) if self.burst > 0 else max(1.0, self.rate)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    catalog_url: str = "http://127.0.0.1:2379"  # etcd; several endpoints comma-separated
    key_prefix: str = "/marconi/"
    host: str = "127.0.0.1"
    port: int = 8888
    placement_key: PlacementKey = PlacementKey.QUEUE
    frozen_buffer: int = 1000  # requests held at once while their queue is frozen
    frozen_max_wait: float = 5.0  # seconds a request may wait for a frozen queue
    connect_timeout: float = 2.0  # seconds to open a connection to a node
    upstream_timeout: float = 30.0  # seconds for a node to answer a forwarded request
    health_interval: float = 2.0  # seconds between health checks of each node
    health_timeout: float = 1.0
    drain_timeout: float = 10.0  # seconds in-flight requests get at shutdown
    workers: int = 1  # processes serving the port (SO_REUSEPORT), under one supervisor
    # Placements kept in memory: about 170 bytes each (BENCHMARKS.md, catalog scale), so the
    # default million costs about 170 MB; above it, a cold queue costs one etcd read.
    cache_capacity: int = 1_000_000
    # A rebalance asks the nodes for each queue's message count up to this many queues; above,
    # it plans on queue counts alone, reading the catalog a page at a time.
    rebalance_stats_limit: int = 10_000
    limits: LimitSettings = LimitSettings()
    auth: AuthMode = AuthMode.NOAUTH
    # noauth on an address other than loopback, said by name: anyone who reaches the proxy can
    # then name any project and the admin role.
    insecure_noauth: bool = False
    keystone_url: str = ""  # Keystone's public endpoint, e.g. http://keystone:5000
    # The service user that validates tokens (keystonemiddleware's way); with no username, each
    # token validates itself (Keystone's default policy lets a token's own user do that).
    keystone_username: str = ""
    keystone_password: str = field(default="", repr=False)
    keystone_user_domain: str = "Default"
    keystone_project: str = "service"
    keystone_project_domain: str = "Default"
    keystone_timeout: float = 5.0  # seconds for Keystone to answer
    # The Keystone user id the trusts of `trust+http(s)://` subscribers delegate to (Zaqar's
    # [trustee] user; the nodes log in as it, MARCONI_NOTIFY_TRUSTEE_*: proxy.trusts). Empty:
    # the proxy makes no trusts, and such subscriptions need a `trust_id` of the client's own.
    trustee_user_id: str = ""
    token_cache_size: int = 10_000  # validated tokens kept in memory (least recently used go)
    # Seconds a validation is trusted at most: a token revoked in Keystone is refused within
    # this long (keystonemiddleware's token_cache_time has the same default).
    token_cache_ttl: float = 300.0
    # Migrations the admin API admits (`MigrationLimits`): at most this many moving out
    # of and into each partition until their switch, and no move of a queue within
    # `migration_cooldown` seconds of its last.
    migrations_out: int = 1
    migrations_in: int = 1
    migration_cooldown: float = 300.0
    # Read deadlines and the connection cap (wire/deadlines.py): a request head must be whole
    # within head_timeout seconds of its first byte; a body must average body_min_rate bytes
    # per second once body_grace seconds have passed; beyond max_connections open connections
    # per process, a new one is answered 503 and closed.
    head_timeout: float = 10.0
    body_min_rate: float = 1024.0
    body_grace: float = 5.0
    max_connections: int = 10_000
    log_level: str = "info"
    log_json: bool | None = None
    # Zaqar's `[signed_url] secret_key`, the nodes' own: under `--auth keystone`, a request with
    # a valid signature needs no token (proxy/auth.py). Unset: signed requests are refused.
    signed_url_key: str | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise ValueError when the settings cannot work together."""
        if self.auth is AuthMode.NOAUTH and not self.insecure_noauth and not loopback(self.host):
            raise ValueError(
                f"--auth noauth trusts every client's X-Project-ID and X-Roles (the admin role "
                f"included), so it serves only on loopback addresses (127.0.0.1, ::1, "
                f"localhost), not on {self.host!r}: use --auth keystone, or add "
                "--insecure-noauth (MARCONI_INSECURE_NOAUTH=true) if a trusted edge in front of "
                "the proxy sets those headers"
            )
        if self.auth is AuthMode.KEYSTONE:
            if not self.keystone_url.startswith(("http://", "https://")):
                raise ValueError("--auth keystone needs --keystone-url http(s)://...")
            if self.keystone_username and not self.keystone_password:
                raise ValueError(
                    "a Keystone service user needs its password in MARCONI_KEYSTONE_PASSWORD"
                )
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.token_cache_size < 1 or self.token_cache_ttl < 0:
            raise ValueError("the token cache needs a size of at least 1 and a TTL of 0 or more")
        if min(self.migrations_out, self.migrations_in) < 1:
            raise ValueError("migrations_out and migrations_in must be at least 1")
        if self.migration_cooldown < 0:
            raise ValueError("migration_cooldown must not be negative")
        if self.head_timeout <= 0 or self.body_grace < 0 or self.body_min_rate < 0:
            raise ValueError(
                "head_timeout must be positive, body_grace and body_min_rate not negative"
            )
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")

    @classmethod
    def from_env(cls) -> ProxySettings:
        """`MARCONI_*` variables; anything unset keeps its default."""
        limits = env.read(LimitSettings, _LIMIT_VARIABLES)
        return env.read(cls, _VARIABLES, limits=limits)

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            self.head_timeout, self.body_min_rate, self.body_grace, self.max_connections
        )

    @property
    def migration_limits(self) -> MigrationLimits:
        return MigrationLimits(self.migrations_out, self.migrations_in, self.migration_cooldown)


def loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name, or "" (every address)


# Each setting's environment variable.
_VARIABLES = {
    "catalog_url": "MARCONI_CATALOG_URL",
    "key_prefix": "MARCONI_CATALOG_PREFIX",
    "host": "MARCONI_PROXY_HOST",
    "port": "MARCONI_PROXY_PORT",
    "placement_key": "MARCONI_PLACEMENT_KEY",
    "frozen_buffer": "MARCONI_FROZEN_BUFFER",
    "frozen_max_wait": "MARCONI_FROZEN_MAX_WAIT",
    "connect_timeout": "MARCONI_UPSTREAM_CONNECT_TIMEOUT",
    "upstream_timeout": "MARCONI_UPSTREAM_TIMEOUT",
    "health_interval": "MARCONI_HEALTH_INTERVAL",
    "health_timeout": "MARCONI_HEALTH_TIMEOUT",
    "drain_timeout": "MARCONI_DRAIN_TIMEOUT",
    "workers": "MARCONI_PROXY_WORKERS",
    "cache_capacity": "MARCONI_CACHE_CAPACITY",
    "rebalance_stats_limit": "MARCONI_REBALANCE_STATS_LIMIT",
    "auth": "MARCONI_AUTH",
    "insecure_noauth": "MARCONI_INSECURE_NOAUTH",
    "keystone_url": "MARCONI_KEYSTONE_URL",
    "keystone_username": "MARCONI_KEYSTONE_USERNAME",
    "keystone_password": "MARCONI_KEYSTONE_PASSWORD",
    "keystone_user_domain": "MARCONI_KEYSTONE_USER_DOMAIN",
    "keystone_project": "MARCONI_KEYSTONE_PROJECT",
    "keystone_project_domain": "MARCONI_KEYSTONE_PROJECT_DOMAIN",
    "keystone_timeout": "MARCONI_KEYSTONE_TIMEOUT",
    "trustee_user_id": "MARCONI_TRUSTEE_USER_ID",
    "token_cache_size": "MARCONI_TOKEN_CACHE_SIZE",
    "token_cache_ttl": "MARCONI_TOKEN_CACHE_TTL",
    "migrations_out": "MARCONI_MIGRATIONS_OUT",
    "migrations_in": "MARCONI_MIGRATIONS_IN",
    "migration_cooldown": "MARCONI_MIGRATION_COOLDOWN",
    "head_timeout": "MARCONI_HEAD_TIMEOUT",
    "body_min_rate": "MARCONI_BODY_MIN_RATE",
    "body_grace": "MARCONI_BODY_GRACE",
    "max_connections": "MARCONI_MAX_CONNECTIONS",
    "log_level": "MARCONI_LOG_LEVEL",
    "log_json": "MARCONI_LOG_JSON",
    "signed_url_key": "MARCONI_SIGNED_URL_KEY",
}
_LIMIT_VARIABLES = {
    "rate": "MARCONI_RATE_LIMIT",
    "burst": "MARCONI_RATE_BURST",
    "concurrency": "MARCONI_CONCURRENCY_LIMIT",
    "projects": "MARCONI_LIMIT_PROJECTS",
}
