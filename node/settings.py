"""Node settings: a frozen dataclass filled from the environment, then from CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from ground import env
from node.notify.settings import NotifySettings
from wire.deadlines import Deadlines
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
    limits: ApiLimits = field(default_factory=ApiLimits)
    # Zaqar's `[signed_url] secret_key` (the share route signs with it, signed requests are
    # checked with it); the proxies in front need the same one. Unset: no pre-signed URLs.
    signed_url_key: str | None = field(default=None, repr=False)
    # The key of queues with `_enable_encrypt_messages` (node/encryption.py): every node of a
    # cluster needs the same one, since a migration moves bodies as they are stored.
    message_encryption_key: str = field(default="", repr=False)
    notify: NotifySettings = field(default_factory=NotifySettings)

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(
            self.head_timeout, self.body_min_rate, self.body_grace, self.max_connections
        )

    @classmethod
    def from_env(cls) -> NodeSettings:
        """`MARCONI_*` variables (and `MARCONI_LIMIT_<NAME>` for each API limit,
        `MARCONI_NOTIFY_<NAME>` for each notification setting)."""
        names = {
            "storage": "MARCONI_STORAGE",
            "partition": "MARCONI_PARTITION",
            "host": "MARCONI_HOST",
            "port": "MARCONI_PORT",
            "gc_interval": "MARCONI_GC_INTERVAL",
            "drain_timeout": "MARCONI_DRAIN_TIMEOUT",
            "workers": "MARCONI_WORKERS",
            "head_timeout": "MARCONI_HEAD_TIMEOUT",
            "body_min_rate": "MARCONI_BODY_MIN_RATE",
            "body_grace": "MARCONI_BODY_GRACE",
            "max_connections": "MARCONI_MAX_CONNECTIONS",
            "log_level": "MARCONI_LOG_LEVEL",
            "log_json": "MARCONI_LOG_JSON",
            "signed_url_key": "MARCONI_SIGNED_URL_KEY",
            "message_encryption_key": "MARCONI_MESSAGE_ENCRYPTION_KEY",
        }
        return env.read(cls, names, limits=ApiLimits.from_env(), notify=NotifySettings.from_env())
