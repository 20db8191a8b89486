"""Proxy settings: a frozen dataclass filled from the environment, then from CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from catalog.registry import Limits


class PlacementKey(StrEnum):
    """What the placement policy hashes: each queue on its own, or a tenant's queues together."""

    QUEUE = "queue"  # "project/queue"
    PROJECT = "project"  # "project"


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
    cache_capacity: int = 1_000_000  # placements kept in memory
    # Migrations the admin API admits (`catalog.registry.Limits`): at most this many moving out
    # of and into each partition until their switch, and no move of a queue within
    # `migration_cooldown` seconds of its last.
    migrations_out: int = 1
    migrations_in: int = 1
    migration_cooldown: float = 300.0
    log_level: str = "info"
    log_json: bool | None = None

    @classmethod
    def from_env(cls) -> ProxySettings:
        """`MARCONI_*` variables; anything unset keeps its default."""
        env = os.environ
        d = cls()
        return cls(
            catalog_url=env.get("MARCONI_CATALOG_URL", d.catalog_url),
            key_prefix=env.get("MARCONI_CATALOG_PREFIX", d.key_prefix),
            host=env.get("MARCONI_PROXY_HOST", d.host),
            port=int(env.get("MARCONI_PROXY_PORT", d.port)),
            placement_key=PlacementKey(env.get("MARCONI_PLACEMENT_KEY", d.placement_key)),
            frozen_buffer=int(env.get("MARCONI_FROZEN_BUFFER", d.frozen_buffer)),
            frozen_max_wait=float(env.get("MARCONI_FROZEN_MAX_WAIT", d.frozen_max_wait)),
            connect_timeout=float(env.get("MARCONI_UPSTREAM_CONNECT_TIMEOUT", d.connect_timeout)),
            upstream_timeout=float(env.get("MARCONI_UPSTREAM_TIMEOUT", d.upstream_timeout)),
            health_interval=float(env.get("MARCONI_HEALTH_INTERVAL", d.health_interval)),
            health_timeout=float(env.get("MARCONI_HEALTH_TIMEOUT", d.health_timeout)),
            drain_timeout=float(env.get("MARCONI_DRAIN_TIMEOUT", d.drain_timeout)),
            cache_capacity=int(env.get("MARCONI_CACHE_CAPACITY", d.cache_capacity)),
            migrations_out=int(env.get("MARCONI_MIGRATIONS_OUT", d.migrations_out)),
            migrations_in=int(env.get("MARCONI_MIGRATIONS_IN", d.migrations_in)),
            migration_cooldown=float(env.get("MARCONI_MIGRATION_COOLDOWN", d.migration_cooldown)),
            log_level=env.get("MARCONI_LOG_LEVEL", d.log_level),
            log_json=_flag(env.get("MARCONI_LOG_JSON")),
        )

    def __post_init__(self) -> None:
        """Settings that cannot work raise `ValueError` (from the environment, or replaced)."""
        if min(self.migrations_out, self.migrations_in) < 1:
            raise ValueError("migrations_out and migrations_in must be at least 1")
        if self.migration_cooldown < 0:
            raise ValueError("migration_cooldown must not be negative")

    @property
    def migration_limits(self) -> Limits:
        return Limits(self.migrations_out, self.migrations_in, self.migration_cooldown)


def _flag(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    return raw.strip().lower() in ("1", "true", "yes", "on")
