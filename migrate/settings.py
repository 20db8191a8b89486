"""Migration worker settings: a frozen dataclass filled from the environment, then CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass

from marconi.logs import json_from_env


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    catalog_url: str = "http://127.0.0.1:2379"  # etcd; several endpoints comma-separated
    key_prefix: str = "/marconi/"
    # Ownership: a worker holds each migration it runs through one lease of this many seconds
    # (whole seconds; etcd's minimum is 2); a worker that dies loses them within it.
    lease_ttl: int = 5
    max_running: int = 8  # migrations one worker runs at once
    # Copy: messages per export/import batch, and the copy's rate limit (messages per second).
    batch: int = 500
    copy_rate: float = 5000.0
    # Freeze: start one only when the last catch-up round changed at most `freeze_lag` records;
    # abort it (unfreeze, catch up again) past `freeze_limit` seconds; fail after
    # `freeze_attempts` aborted freezes.
    freeze_lag: int = 50
    freeze_limit: float = 0.5
    freeze_attempts: int = 5
    # After the source is frozen, wait this long before the final catch-up: on MongoDB a write
    # that passed its fence check just before the freeze may still land (see TransferStore).
    settle: float = 0.05
    catch_up_pause: float = 0.05  # seconds between catch-up rounds
    # Cleanup: keep the source copy this long after the switch (stale routes still find its
    # "moved" fence), then drop it at this rate (records per second) in batches of `batch`.
    purge_grace: float = 60.0
    purge_rate: float = 2000.0
    retry_pause: float = 1.0  # seconds before a failed step (etcd or storage down) runs again
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9188  # /metrics and /health; 0 for none
    log_level: str = "info"
    log_json: bool | None = None

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """`MARCONI_*` variables; anything unset keeps its default."""
        env = os.environ
        d = cls()

        def number(name: str, default: float) -> float:
            return float(env.get(f"MARCONI_WORKER_{name}", default))

        def whole(name: str, default: int) -> int:
            return int(env.get(f"MARCONI_WORKER_{name}", default))

        return cls(
            catalog_url=env.get("MARCONI_CATALOG_URL", d.catalog_url),
            key_prefix=env.get("MARCONI_CATALOG_PREFIX", d.key_prefix),
            lease_ttl=whole("LEASE_TTL", d.lease_ttl),
            max_running=whole("MAX_RUNNING", d.max_running),
            batch=whole("BATCH", d.batch),
            copy_rate=number("COPY_RATE", d.copy_rate),
            freeze_lag=whole("FREEZE_LAG", d.freeze_lag),
            freeze_limit=number("FREEZE_LIMIT", d.freeze_limit),
            freeze_attempts=whole("FREEZE_ATTEMPTS", d.freeze_attempts),
            settle=number("SETTLE", d.settle),
            catch_up_pause=number("CATCH_UP_PAUSE", d.catch_up_pause),
            purge_grace=number("PURGE_GRACE", d.purge_grace),
            purge_rate=number("PURGE_RATE", d.purge_rate),
            retry_pause=number("RETRY_PAUSE", d.retry_pause),
            metrics_host=env.get("MARCONI_WORKER_METRICS_HOST", d.metrics_host),
            metrics_port=whole("METRICS_PORT", d.metrics_port),
            log_level=env.get("MARCONI_LOG_LEVEL", d.log_level),
            log_json=json_from_env(env.get("MARCONI_LOG_JSON")),
        )

    def __post_init__(self) -> None:
        """Settings that cannot work raise `ValueError` (from the environment, or replaced)."""
        if self.lease_ttl < 2:
            raise ValueError("lease_ttl must be at least 2 seconds (etcd's minimum)")
        if min(self.batch, self.max_running, self.freeze_attempts) < 1:
            raise ValueError("batch, max_running and freeze_attempts must be at least 1")
        if min(self.copy_rate, self.purge_rate, self.freeze_limit) <= 0:
            raise ValueError("copy_rate, purge_rate and freeze_limit must be positive")
