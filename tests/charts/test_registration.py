"""The registration Job's script, as rendered, run by `sh` with the real `marconi` command against
a real proxy's admin API (over the in-memory catalog): an install adds every partition, and an
upgrade changes what the values own without undoing what an operator changed by hand."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from catalog.records import Partition, PartitionState
from tests.charts.chart import EXAMPLE, FULLNAME, NAMESPACE, Helm, Manifests, container
from tests.conftest import FakeClock
from tests.proxy.cluster import Cluster, cluster

pytestmark = pytest.mark.slow  # a dozen `marconi` processes

URIS = {
    "p1": "mongodb://mongodb-p1:27017/marconi",  # what the existing Secret "mongodb-p1" holds
    "p2": "mongodb://mongodb-p2:27017/marconi",
    "p3": "mongodb://mongodb-p3:27017/marconi",
}


@pytest.fixture
async def admin(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Cluster]:
    """A proxy with an empty catalog, as right after an install."""
    with structlog.testing.capture_logs():
        async with cluster(tmp_path, clock, partitions=()) as made:
            yield made


async def run_job(job: Manifests, admin: Cluster, uris: dict[str, str]) -> tuple[int, str]:
    """Run the Job's container command with its environment, the Secrets' values filled in."""
    (workload,) = job.of("Job")
    c = container(workload)
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for entry in c["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
    # The Job's env names each partition's storage in the order of the values.
    for i, name in enumerate(sorted(uris)):
        env[f"MARCONI_STORAGE_{i}"] = uris[name]
    env["MARCONI_URL"] = str(admin.proxy.make_url("")).rstrip("/")  # instead of the Service
    process = await asyncio.create_subprocess_exec(
        *c["command"],
        *c["args"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def node_url(name: str) -> tuple[str, ...]:
    return (f"http://{FULLNAME}-node-{name}.{NAMESPACE}.svc:8889",)


async def test_install_adds_the_partitions_and_upgrade_keeps_what_operators_changed(
    helm: Helm, example: Manifests, admin: Cluster
) -> None:
    code, out = await run_job(example, admin, URIS)
    assert code == 0, out
    assert sorted(await admin.catalog.partitions(), key=lambda p: p.name) == [
        Partition("p1", node_url("p1"), 1, PartitionState.ACTIVE, URIS["p1"]),
        Partition("p2", node_url("p2"), 2, PartitionState.ACTIVE, URIS["p2"]),
        Partition("p3", node_url("p3"), 1, PartitionState.ACTIVE, URIS["p3"]),
    ]

    # Between two upgrades, an operator drains p1; then p2's URI changes in the values.
    await admin.catalog.update_partition("p1", state=PartitionState.DRAINING)
    moved = {**URIS, "p2": "mongodb://mongodb-p2-new:27017/marconi"}
    code, out = await run_job(example, admin, moved)
    assert code == 0, out
    after = {p.name: p for p in await admin.catalog.partitions()}
    assert after["p1"].state is PartitionState.DRAINING  # not undone
    assert after["p2"].storage == moved["p2"]
    assert after["p3"] == Partition("p3", node_url("p3"), 1, PartitionState.ACTIVE, URIS["p3"])

    # Told to own weight and state too, the next upgrade sets them as the values say.
    synced = helm.template(EXAMPLE, **{"registration.syncWeightAndState": "true"})
    code, out = await run_job(synced, admin, moved)
    assert code == 0, out
    assert (await admin.catalog.partition("p1")).state is PartitionState.ACTIVE


async def test_a_refused_partition_fails_the_job(example: Manifests, admin: Cluster) -> None:
    """The admin API refuses a storage URI it cannot open: the Job fails and says why."""
    code, out = await run_job(example, admin, {**URIS, "p2": "mongodb+srv://cluster0/marconi"})
    assert code == 1
    assert "storage" in out
    assert [p.name for p in await admin.catalog.partitions()] == ["p1"]
