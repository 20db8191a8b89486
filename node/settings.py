"""Node settings: a frozen dataclass filled from the environment, then from CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from marconi.logs import json_from_env
from node.limits import Limits


@dataclass(frozen=True, slots=True)
class NodeSettings:
    storage: str = "sqlite:///./marconi-data/default.db"
    partition: str = "default"
    host: str = "127.0.0.1"
    port: int = 8889
    gc_interval: float = 30.0
    log_level: str = "info"
    log_json: bool | None = None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls) -> NodeSettings:
        env = os.environ
        defaults = cls()
        return cls(
            storage=env.get("MARCONI_STORAGE", defaults.storage),
            partition=env.get("MARCONI_PARTITION", defaults.partition),
            host=env.get("MARCONI_HOST", defaults.host),
            port=int(env.get("MARCONI_PORT", defaults.port)),
            gc_interval=float(env.get("MARCONI_GC_INTERVAL", defaults.gc_interval)),
            log_level=env.get("MARCONI_LOG_LEVEL", defaults.log_level),
            log_json=json_from_env(env.get("MARCONI_LOG_JSON")),
            limits=Limits.from_env(),
        )
