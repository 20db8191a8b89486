"""The deliverer's Prometheus series (no per-queue labels: a partition holds millions)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERED = Counter(
    "marconi_node_notifications_delivered",
    "Notifications a subscriber accepted, by scheme (webhook answers 2xx-4xx, SMTP accepted).",
    ["scheme"],
)
FAILURES = Counter(
    "marconi_node_notification_failures",
    "Attempts to notify that failed (no answer, a 5xx, an SMTP error), by scheme.",
    ["scheme"],
)
RETRIES = Counter(
    "marconi_node_notification_retries",
    "Failed notifications scheduled to be tried again per their retry policy, by scheme.",
    ["scheme"],
)
ABANDONED = Counter(
    "marconi_node_notifications_abandoned",
    "Notifications given up: retries spent, an unknown scheme, an unconfirmed subscription,"
    " or one deleted or expired since the post.",
    ["reason"],
)
OUTBOX_DEPTH = Gauge(
    "marconi_node_outbox_depth",
    "Deliveries the partition's outbox holds (one per post and subscription), last counted.",
)
LAG = Histogram(
    "marconi_node_notification_lag_seconds",
    "From a post's write to its notification's acceptance by the subscriber.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

# What a deliverer in a child process (node.notify.process) reports to its node, which serves
# them at its own /metrics: the child's totals, applied by the node as increments.
Sample = tuple[str, tuple[tuple[str, str], ...], float]
COUNTERS = {
    "marconi_node_notifications_delivered_total": DELIVERED,
    "marconi_node_notification_failures_total": FAILURES,
    "marconi_node_notification_retries_total": RETRIES,
    "marconi_node_notifications_abandoned_total": ABANDONED,
}


def snapshot() -> list[Sample]:
    """This process's values of the deliverer's series (counters and buckets as totals)."""
    return [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for metric in (DELIVERED, FAILURES, RETRIES, ABANDONED, OUTBOX_DEPTH, LAG)
        for family in metric.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    ]


class Relay:
    """Applies one child's snapshots to this process's series. A new child (after a restart)
    counts from zero again: `restart` forgets what the last one reported."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def restart(self) -> None:
        self._seen.clear()

    def apply(self, samples: list[Sample]) -> None:
        cumulative: list[float] = []  # the lag histogram's `_bucket` increments, le ascending
        for name, labels, value in samples:
            key = (name, labels)
            delta, self._seen[key] = value - self._seen.get(key, 0.0), value
            if name == "marconi_node_outbox_depth":
                OUTBOX_DEPTH.set(value)
            elif name == "marconi_node_notification_lag_seconds_bucket":
                cumulative.append(delta)
            elif name == "marconi_node_notification_lag_seconds_sum" and delta > 0:
                LAG._sum.inc(delta)  # prometheus_client has no public way to merge observations
            elif name in COUNTERS and delta > 0:
                COUNTERS[name].labels(**dict(labels)).inc(delta)
        # A histogram keeps each bucket's own count; its `_bucket` samples are cumulative.
        for i, (below, upto) in enumerate(zip([0.0, *cumulative], cumulative, strict=False)):
            if upto > below:
                LAG._buckets[i].inc(upto - below)
