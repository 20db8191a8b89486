"""Subscription validation steps against their settings (the API tests cover the defaults)."""

from __future__ import annotations

import pytest

from wire import validation
from wire.errors import ValidationFailed
from wire.limits import ApiLimits

NOW = 1_700_000_000.0


def test_subscriber_types_come_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_LIMIT_SUBSCRIBER_TYPES", "https, mailto")
    limits = ApiLimits.from_env()
    assert limits.subscriber_schemes == ["https", "mailto"]
    validation.subscription_posting({"subscriber": "https://x.test"}, limits, NOW)
    validation.subscription_posting({"subscriber": "mailto:a@x.test"}, limits, NOW)
    with pytest.raises(ValidationFailed) as refused:
        validation.subscription_posting({"subscriber": "http://x.test"}, limits, NOW)
    assert str(refused.value) == (
        "The subscriber type of subscription must be supported in the list ['https', 'mailto']."
    )


def test_ttl_bounds_follow_the_settings_and_the_calendar() -> None:
    limits = ApiLimits(min_subscription_ttl=300)
    with pytest.raises(ValidationFailed, match="at least 300 seconds"):
        validation.subscription_patching({"ttl": 299}, limits, NOW)
    validation.subscription_patching({"ttl": 300}, limits, NOW)
    latest = int(validation.LATEST_EXPIRY - NOW)
    validation.subscription_patching({"ttl": latest - 1}, limits, NOW)
    with pytest.raises(ValidationFailed, match="must be less than 9999-12-31"):
        validation.subscription_patching({"ttl": latest}, limits, NOW)


def test_listing_limit_follows_the_setting() -> None:
    limits = ApiLimits(max_subscriptions_per_page=5)
    validation.subscription_listing(5, limits)
    validation.subscription_listing(None, limits)
    with pytest.raises(ValidationFailed, match="greater than 5"):
        validation.subscription_listing(6, limits)


@pytest.mark.parametrize("policy", [{"retries_with_no_delay": True}, {"maximum_delay": 1.5}])
def test_retry_policy_counts_are_integers(policy: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed, match="must be a integer"):
        validation.retry_policy({"_retry_policy": policy})
