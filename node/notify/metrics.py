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
