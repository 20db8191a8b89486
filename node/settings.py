"""Node settings: a frozen dataclass filled from the environment, then from CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from ground import env
from wire.limits import ApiLimits


@dataclass(frozen=True, slots=True)
class NodeSettings:
    storage: str = "sqlite:///./marconi-data/default.db"
    partition: str = "default"
    host: str = "127.0.0.1"
    port: int = 8889
    gc_interval: float = 30.0
    drain_timeout: float = 10.0  # seconds in-flight requests get at shutdown
    workers: int = 1  # processes serving the port (SO_REUSEPORT), under one supervisor
    log_level: str = "info"
    log_json: bool | None = None
    limits: ApiLimits = field(default_factory=ApiLimits)

    @classmethod
    def from_env(cls) -> NodeSettings:
        """`MARCONI_*` variables (and `MARCONI_LIMIT_<NAME>` for each API limit)."""
        names = {
            "storage": "MARCONI_STORAGE",
            "partition": "MARCONI_PARTITION",
            "host": "MARCONI_HOST",
            "port": "MARCONI_PORT",
            "gc_interval": "MARCONI_GC_INTERVAL",
            "drain_timeout": "MARCONI_DRAIN_TIMEOUT",
            "workers": "MARCONI_WORKERS",
            "log_level": "MARCONI_LOG_LEVEL",
            "log_json": "MARCONI_LOG_JSON",
        }
        return env.read(cls, names, limits=ApiLimits.from_env())
