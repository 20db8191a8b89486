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
    ["outcome"],  # switched, aborted
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
for _outcome in ("switched", "aborted"):
    FREEZE_SECONDS.labels(_outcome)  # exported at 0 from the start, so alerts see the series
DEAD_LETTERS_MOVED = Counter(
    "marconi_dead_letters_moved_total",
    "Dead letters moved from a partition's outgoing pile into their dead-letter queue.",
)
DEAD_LETTERS_WAITING = Gauge(
    "marconi_dead_letters_waiting",
    "Dead letters waiting in a partition's outgoing piles at the mover's last pass (at most"
    " one batch, MARCONI_WORKER_DEAD_LETTER_BATCH).",
    ["partition"],
)
DEAD_LETTERS_DEFERRED = Counter(
    "marconi_dead_letters_deferred_total",
    "Batches of dead letters left for a later pass, by reason (NotPlaced, QueueDoesNotExist,"
    " QueueFrozen, StorageUnavailable, ...).",
    ["reason"],
)
MIGRATIONS = Gauge(
    "marconi_migrations",
    "Migrations recorded in the catalog, by phase (as last seen by this worker).",
    ["phase"],
)
RUNNING = Gauge("marconi_migrations_running", "Migrations this worker owns and runs.")
# Labelled by phase only (never by migration or queue): the longest stay and the largest lag
# among the migrations in flight are what an alert needs, and their number stays bounded.
PHASE_AGE = Gauge(
    "marconi_migration_phase_age_seconds",
    "The longest time a migration in flight has spent in its current phase, by phase "
    "(0: none in that phase; as last seen by this worker).",
    ["phase"],
)
CATCH_UP_LAG = Gauge(
    "marconi_migration_catch_up_lag",
    "The largest lag (records its last catch-up round changed) among migrations catching up.",
)
FREEZE_ABORTS = Gauge(
    "marconi_migration_freeze_aborts",
    "The most freezes aborted by any one migration in flight.",
)
IN_FLIGHT = tuple(p for p in Phase if not p.terminal)


def count_phases(migrations: Iterable[Migration], now: float) -> None:
    """The catalog's migrations as gauges: how many in each phase, the longest stay in each
    phase in flight, the worst catch-up lag and the most aborted freezes."""
    found = list(migrations)
    tally = Tally(m.phase for m in found)
    for phase in Phase:
        MIGRATIONS.labels(phase.value).set(tally.get(phase, 0))
    ages = dict.fromkeys(IN_FLIGHT, 0.0)
    lag, aborts = 0, 0
    for m in found:
        if m.phase.terminal:
            continue
        stay = m.timings.get(m.phase.value, 0.0) + max(0.0, now - m.updated)
        ages[m.phase] = max(ages[m.phase], stay)
        aborts = max(aborts, m.progress.freeze_attempts)
        if m.phase is Phase.CATCHING_UP:
            lag = max(lag, m.progress.lag)
    for phase, age in ages.items():
        PHASE_AGE.labels(phase.value).set(age)
    CATCH_UP_LAG.set(lag)
    FREEZE_ABORTS.set(aborts)
