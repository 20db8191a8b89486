"""Migration worker settings: a frozen dataclass filled from the environment, then CLI flags."""

from __future__ import annotations

from dataclasses import dataclass

from ground import env


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
    # The source's fence lifts itself `fence_grace` seconds after the freeze limit, should this
    # worker vanish mid-freeze; at the point of no return it is made to last `switch_fence`
    # seconds, time enough for the switch's compare-and-swap (see `Machine._frozen`).
    fence_grace: float = 1.0
    switch_fence: float = 30.0
    # After the source is frozen, wait this long before the final catch-up: on MongoDB a write
    # that passed its fence check just before the freeze may still land (see TransferStore).
    settle: float = 0.05
    catch_up_pause: float = 0.05  # seconds between catch-up rounds
    # Convergence: once the lag has not reached a new low for `stall_rounds` rounds or
    # `stall_seconds` seconds, the worker escalates: it freezes anyway if the last round and
    # baseline refresh took well within `freeze_limit` (a freeze does one of each); otherwise it
    # says so on the record, and fails the migration after `stall_limit` seconds more.
    stall_rounds: int = 20
    stall_seconds: float = 5.0
    stall_limit: float = 120.0
    # Cleanup: keep the source copy this long after the switch (stale routes still find its
    # "moved" fence), then drop it at this rate (records per second) in batches of `batch`.
    purge_grace: float = 60.0
    purge_rate: float = 2000.0
    # The census of queues and messages per partition (gauges for the dashboard): every this
    # many seconds (0: never), messages counted only up to this many queues in the cluster.
    census_interval: float = 30.0
    census_stats_limit: int = 10_000
    # Dead letters bound for another partition (migrate.deadletters): a pass over every
    # partition's outgoing piles every this many seconds (0: never), moving up to `batch` of
    # each; `crash_after` (1-4) is a test hook: kill -9 the worker right after that step.
    dead_letter_interval: float = 1.0
    dead_letter_batch: int = 500
    dead_letter_crash_after: int = 0
    retry_pause: float = 1.0  # seconds before a failed step (etcd or storage down) runs again
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9188  # /metrics and /health; 0 for none
    log_level: str = "info"
    log_json: bool | None = None

    @classmethod
    def from_env(cls) -> WorkerSettings:
        """`MARCONI_WORKER_<SETTING>` for the worker's own settings, the catalog's and the log's
        shared `MARCONI_*` variables; anything unset keeps its default."""
        shared = ("catalog_url", "key_prefix", "log_level", "log_json")
        names = {
            **env.prefixed(cls, "MARCONI_WORKER_", skip=shared),
            "catalog_url": "MARCONI_CATALOG_URL",
            "key_prefix": "MARCONI_CATALOG_PREFIX",
            "log_level": "MARCONI_LOG_LEVEL",
            "log_json": "MARCONI_LOG_JSON",
        }
        return env.read(cls, names)

    def __post_init__(self) -> None:
        """Settings that cannot work raise `ValueError` (from the environment, or replaced)."""
        if self.lease_ttl < 2:
            raise ValueError("lease_ttl must be at least 2 seconds (etcd's minimum)")
        if self.dead_letter_batch < 1:
            raise ValueError("dead_letter_batch must be at least 1")
        if min(self.batch, self.max_running, self.freeze_attempts, self.stall_rounds) < 1:
            raise ValueError(
                "batch, max_running, freeze_attempts and stall_rounds must be at least 1"
            )
        if min(self.stall_seconds, self.stall_limit, self.fence_grace, self.switch_fence) <= 0:
            raise ValueError(
                "stall_seconds, stall_limit, fence_grace and switch_fence must be positive"
            )
        if min(self.copy_rate, self.purge_rate, self.freeze_limit) <= 0:
            raise ValueError("copy_rate, purge_rate and freeze_limit must be positive")
