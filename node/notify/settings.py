"""Notification settings of a node: the SMTP server and sender, and how its deliverer works."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    # Zaqar's `mailto:` confirmation email ([notification] external_confirmation_url and
    # subscription_confirmation_email_template: topic, body, sender; in the body {0} is the
    # queue, {1} the project, {2} the link). Without the page's URL no such email is sent.
    external_confirmation_url: str = ""
    confirmation_email_topic: str = "Zaqar Notification - Subscription Confirmation"
    confirmation_email_body: str = (
        "You have chosen to subscribe to the queue: {0}. This queue belongs to project: {1}. "
        "To confirm this subscription, click or visit this link below: {2}"
    )
    confirmation_email_sender: str = "Zaqar Notifications <no-reply@openstack.org>"
    # `trust+http(s)://` subscribers (node.notify.trust): Keystone's endpoint and the trustee
    # user the trusts made at subscription time delegate to (Zaqar's [trustee] section); the
    # proxy makes the trusts for that user (`MARCONI_TRUSTEE_USER_ID`). Unset: such
    # subscribers are not notified.
    keystone_url: str = ""
    trustee_username: str = ""
    trustee_password: str = field(default="", repr=False)
    trustee_user_domain: str = "Default"
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
