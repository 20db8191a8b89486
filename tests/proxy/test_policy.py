"""The placement policy: weighted consistent hashing, pins, and partitions that take no queues."""

from __future__ import annotations

from collections import Counter

import pytest

from catalog.records import Partition, PartitionState, Pin
from proxy.policy import NoPartition, PlacementPolicy
from proxy.settings import PlacementKey


def partitions(*specs: tuple[str, int, PartitionState]) -> dict[str, Partition]:
    return {
        name: Partition(name, (f"http://{name}",), weight, state) for name, weight, state in specs
    }


ACTIVE = PartitionState.ACTIVE
WEIGHTED = partitions(("p1", 1, ACTIVE), ("p2", 1, ACTIVE), ("p3", 2, ACTIVE))


def test_weights_share_new_queues() -> None:
    policy = PlacementPolicy()
    counts = Counter(policy.choose("tenant", f"queue-{i}", WEIGHTED) for i in range(600))
    for name, expected in (("p1", 150), ("p2", 150), ("p3", 300)):
        assert abs(counts[name] - expected) <= 0.15 * expected, counts


def test_the_same_queue_always_lands_in_the_same_place() -> None:
    first, second = PlacementPolicy(), PlacementPolicy()
    assert [first.choose("t", f"q{i}", WEIGHTED) for i in range(50)] == [
        second.choose("t", f"q{i}", dict(WEIGHTED)) for i in range(50)
    ]


def test_pin_wins() -> None:
    policy = PlacementPolicy()
    pins = {"vip": Pin("vip", "p2")}
    assert {policy.choose("vip", f"q{i}", WEIGHTED, pins) for i in range(100)} == {"p2"}
    assert len({policy.choose("other", f"q{i}", WEIGHTED, pins) for i in range(100)}) == 3


def test_pin_to_a_partition_that_takes_no_queues_is_ignored() -> None:
    parts = partitions(("p1", 1, ACTIVE), ("p2", 1, PartitionState.DRAINING))
    policy = PlacementPolicy()
    assert policy.choose("vip", "q", parts, {"vip": Pin("vip", "p2")}) == "p1"
    assert policy.choose("vip", "q", parts, {"vip": Pin("vip", "gone")}) == "p1"


@pytest.mark.parametrize("closed", [PartitionState.DRAINING, PartitionState.READ_ONLY])
def test_draining_and_read_only_get_nothing(closed: PartitionState) -> None:
    parts = partitions(("p1", 1, ACTIVE), ("p2", 5, closed), ("p3", 1, ACTIVE), ("p4", 0, ACTIVE))
    policy = PlacementPolicy()
    chosen = Counter(policy.choose("t", f"q{i}", parts) for i in range(300))
    assert set(chosen) == {"p1", "p3"}


def test_no_partition_accepts() -> None:
    with pytest.raises(NoPartition):
        PlacementPolicy().choose("t", "q", partitions(("p1", 1, PartitionState.READ_ONLY)))
    with pytest.raises(NoPartition):
        PlacementPolicy().choose("t", "q", {})


def test_keyed_by_project_keeps_a_tenant_together() -> None:
    policy = PlacementPolicy(PlacementKey.PROJECT)
    for tenant in ("acme", "globex", "initech", "umbrella"):
        assert len({policy.choose(tenant, f"q{i}", WEIGHTED) for i in range(50)}) == 1
    tenants = Counter(policy.choose(f"tenant-{i}", "q", WEIGHTED) for i in range(300))
    assert set(tenants) == {"p1", "p2", "p3"}


def test_ring_is_rebuilt_only_when_partitions_change() -> None:
    policy = PlacementPolicy()
    policy.choose("t", "q", WEIGHTED)
    ring = policy._ring
    policy.choose("t", "q", dict(WEIGHTED))
    assert policy._ring is ring  # an equal view: same ring
    moved = dict(WEIGHTED, p1=Partition("p1", ("http://elsewhere",), 1, ACTIVE))
    policy.choose("t", "q", moved)
    assert policy._ring is ring  # new nodes, same names and weights: same ring
    policy.choose("t", "q", dict(WEIGHTED, p1=Partition("p1", ("http://p1",), 3, ACTIVE)))
    assert policy._ring is not ring


def test_moving_weight_moves_few_queues() -> None:
    """Consistent hashing: adding a partition moves about its share, not everything."""
    policy = PlacementPolicy()
    before = {i: policy.choose("t", f"q{i}", WEIGHTED) for i in range(600)}
    grown = dict(WEIGHTED, p4=Partition("p4", ("http://p4",), 1, ACTIVE))
    after = {i: policy.choose("t", f"q{i}", grown) for i in range(600)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(after[i] == "p4" for i in moved)
    assert len(moved) < 600 * 0.3
