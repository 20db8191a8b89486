"""The API's limits and defaults, as Zaqar's `[transport]` and `[storage]` options have them."""

from __future__ import annotations

from dataclasses import dataclass

from ground import env


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_queues_per_page: int = 20
    max_messages_per_page: int = 20
    max_messages_per_claim_or_pop: int = 20
    max_queue_metadata: int = 64 * 1024
    max_messages_post_size: int = 256 * 1024
    max_message_ttl: int = 1_209_600
    max_message_delay: int = 900
    max_claim_ttl: int = 43_200
    max_claim_grace: int = 43_200
    min_message_ttl: int = 60
    min_claim_ttl: int = 60
    min_claim_grace: int = 60
    default_message_ttl: int = 3600
    default_message_delay: int = 0
    default_claim_ttl: int = 300
    default_claim_grace: int = 60
    max_subscriptions_per_page: int = 20
    min_subscription_ttl: int = 60
    default_subscription_ttl: int = 3600
    # The subscriber URI schemes a subscription may use, comma-separated (Zaqar's
    # `subscriber_types`).
    subscriber_types: str = "http,https,mailto,trust+http,trust+https"
    # How deeply arrays and objects may nest in a request body (Zaqar sets no bound): deeper
    # is refused with 400, so that nothing stored is too deep to be answered later.
    max_json_depth: int = 32

    @property
    def subscriber_schemes(self) -> list[str]:
        return [t.strip() for t in self.subscriber_types.split(",") if t.strip()]

    @classmethod
    def from_env(cls, prefix: str = "MARCONI_LIMIT_") -> ApiLimits:
        """Each field may be overridden by `MARCONI_LIMIT_<FIELD>` (upper case)."""
        return env.read(cls, env.prefixed(cls, prefix))


MAX_BODY = 4 * 1024 * 1024
"""The largest request body any server reads (bytes); the API's own limits are far below it."""
