"""The worker's census and phase gauges: partitions' queues and messages, read from a real
catalog store (in memory) and real SQLite storage."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from catalog.catalog import Catalog
from catalog.memory import MemoryStore
from catalog.migrations import Migration, Phase, Progress
from catalog.records import Partition
from migrate import census, metrics
from migrate.storages import PinnedClock, Storages
from node.models import NewMessage

CLIENT = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_census_counts_each_partitions_queues_and_messages(tmp_path: Path) -> None:
    catalog = Catalog(MemoryStore())
    for name in ("c1", "c2", "c3"):
        uri = f"sqlite:///{tmp_path}/{name}.db"
        await catalog.add_partition(Partition(name, ("http://127.0.0.1:1",), storage=uri))
    storages = Storages(catalog, PinnedClock())
    try:
        layout = {"a": ("c1", 2), "b": ("c1", 3), "c": ("c2", 0)}
        for queue, (partition, messages) in layout.items():
            await catalog.place("t", queue, partition)
            storage = await storages.of(partition)
            await storage.queues.create("t", queue, None)
            posted = [NewMessage(body={"n": n}, ttl=300) for n in range(messages)]
            if posted:
                await storage.messages.post("t", queue, posted, CLIENT)
        await census.count(catalog, storages, stats_limit=10)
        assert sample("marconi_partition_queues", partition="c1") == 2
        assert sample("marconi_partition_queues", partition="c2") == 1
        assert sample("marconi_partition_queues", partition="c3") == 0
        assert sample("marconi_partition_messages", partition="c1") == 5
        assert sample("marconi_partition_messages", partition="c2") == 0

        # Above the limit, queues are still counted, messages are not read (nor left stale).
        await census.count(catalog, storages, stats_limit=2)
        assert sample("marconi_partition_queues", partition="c1") == 2
        assert sample("marconi_partition_messages", partition="c1") is None
    finally:
        await storages.close()


def test_phase_gauges_take_the_longest_stay_and_the_worst_lag() -> None:
    now = 1000.0
    migrations = [
        Migration("1", "t", "a", "p1", "p2", Phase.COPYING, updated=900.0),
        Migration(
            "2",
            "t",
            "b",
            "p1",
            "p3",
            Phase.CATCHING_UP,
            updated=990.0,
            timings={"CATCHING_UP": 30.0},
            progress=Progress(lag=70, freeze_attempts=2),
        ),
        Migration("3", "t", "c", "p2", "p3", Phase.COPYING, updated=980.0),
        Migration("4", "t", "d", "p2", "p1", Phase.DONE, updated=0.0),
    ]
    metrics.count_phases(migrations, now)
    assert sample("marconi_migration_phase_age_seconds", phase="COPYING") == 100.0
    assert sample("marconi_migration_phase_age_seconds", phase="CATCHING_UP") == 40.0
    assert sample("marconi_migration_phase_age_seconds", phase="FROZEN") == 0.0
    assert sample("marconi_migration_phase_age_seconds", phase="DONE") is None
    assert sample("marconi_migration_catch_up_lag") == 70
    assert sample("marconi_migration_freeze_aborts") == 2
    assert sample("marconi_migrations", phase="COPYING") == 2

    metrics.count_phases([], now)
    assert sample("marconi_migration_catch_up_lag") == 0
    assert sample("marconi_migration_phase_age_seconds", phase="COPYING") == 0.0
