"""The migration worker's Prometheus metrics (served by `migrate.server` on /metrics)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from catalog.migrations import Migration, Phase

PHASE_SECONDS = Histogram(
    "marconi_migration_phase_seconds",
    "Time migrations spent in each phase, observed when they leave it.",
    ["phase"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0),
)
MESSAGES_COPIED = Counter(
    "marconi_migration_messages_copied_total",
    "Messages written to targets by the bulk copy (the catch-ups' changes are in the lag).",
)
RECORDS_PURGED = Counter(
    "marconi_migration_records_purged_total",
    "Messages, claims and queue records dropped from sources after their switch.",
)
FREEZE_SECONDS = Histogram(
    "marconi_migration_freeze_seconds",
    "How long a freeze held writes to the moving queue, by outcome.",
    ["outcome"],  # switched, aborted, failed
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
MIGRATIONS = Gauge(
    "marconi_migrations",
    "Migrations recorded in the catalog, by phase (as last seen by this worker).",
    ["phase"],
)
RUNNING = Gauge("marconi_migrations_running", "Migrations this worker owns and runs.")


def count_phases(migrations: Iterable[Migration]) -> None:
    tally = Tally(m.phase for m in migrations)
    for phase in Phase:
        MIGRATIONS.labels(phase.value).set(tally.get(phase, 0))
