"""Notification settings of a node: the SMTP server and sender, and how its deliverer works."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ground import env


@dataclass(frozen=True, slots=True)
class NotifySettings:
    enabled: bool = True  # run a deliverer in every node process
    # Run it in a child process of its own (started, watched and stopped by the node), so that
    # a post never shares an event loop, nor a core, with delivery; false: in the node's loop.
    process: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_sender: str = "marconi@localhost"  # the envelope sender, and From without a `from` option
    smtp_timeout: float = 10.0
    webhook_timeout: float = 10.0  # seconds a subscriber has to answer one POST
    # Zaqar's [notification] require_confirmation: only confirmed subscriptions are notified.
    require_confirmation: bool = False
    lease: float = 30.0  # seconds a deliverer holds the deliveries it took
    batch: int = 64  # deliveries taken at once
    concurrency: int = 128  # deliveries in flight per process
    poll_interval: float = 0.1  # seconds between looks at an idle outbox
    gather: float = 0.02  # seconds a deliverer woken by a post waits for more before leasing
    depth_interval: float = 5.0  # seconds between counts of the outbox, for its gauge

    @classmethod
    def from_env(
        cls, prefix: str = "MARCONI_NOTIFY_", environ: Mapping[str, str] | None = None
    ) -> NotifySettings:
        """Each field may be set by `MARCONI_NOTIFY_<FIELD>` (upper case)."""
        return env.read(cls, env.prefixed(cls, prefix), environ)
