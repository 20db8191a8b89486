"""Zaqar's retry policy as a schedule of delays (node/notify/policy.py)."""

from __future__ import annotations

from node.notify.policy import RetryPolicy, arithmetic, choose, geometric, linear, next_delay


def test_defaults_are_zaqars_four_phases() -> None:
    # 3 at once, 3 after the minimum delay, linear backoff 5..25 by 5, 3 after the maximum.
    assert RetryPolicy().schedule() == [0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]


def test_backoff_functions_span_minimum_to_maximum() -> None:
    assert linear(5, 30) == [5, 10, 15, 20, 25]
    assert arithmetic(5, 30) == [5, 7, 12, 20, 30]
    assert geometric(5, 30) == [5, 7, 12, 19, 30]
    # Zaqar's exponential function draws the geometric curve.
    exp = RetryPolicy(retry_backoff_function="exponential", minimum_delay=5, maximum_delay=30)
    assert exp.schedule()[6:11] == [5, 7, 12, 19, 30]


def test_degenerate_ranges_do_not_divide_by_zero() -> None:
    assert geometric(5, 10) == [5]
    assert arithmetic(5, 5) == []
    assert geometric(0, 30) == [0] * 6


def test_options_shape_the_schedule_and_bad_values_keep_defaults() -> None:
    policy = RetryPolicy.from_options(
        {
            "retries_with_no_delay": 1,
            "minimum_delay_retries": 0,
            "minimum_delay": 1,
            "maximum_delay": 11,
            "maximum_delay_retries": 1,
            "retry_backoff_function": "linear",
        }
    )
    assert policy.schedule() == [0, 1, 6, 11]
    odd = RetryPolicy.from_options({"retries_with_no_delay": "x", "retry_backoff_function": "y"})
    assert odd == RetryPolicy()


def test_next_delay_walks_the_schedule_then_gives_up() -> None:
    policy = RetryPolicy.from_options(
        {"retries_with_no_delay": 1, "minimum_delay_retries": 1, "minimum_delay": 2,
         "maximum_delay": 2, "maximum_delay_retries": 0}
    )  # fmt: skip
    assert [next_delay(policy, n) for n in (1, 2, 3)] == [0, 2, None]
    assert next_delay(policy, 0) is None


def test_subscription_policy_wins_unless_told_to_ignore_it() -> None:
    own = {"_retry_policy": {"retries_with_no_delay": 7}}
    queue = {"_retry_policy": {"retries_with_no_delay": 2}}
    assert choose(own, queue).retries_with_no_delay == 7
    assert choose({}, queue).retries_with_no_delay == 2
    assert choose({}, {}) == RetryPolicy()
    ignoring = {"_retry_policy": {"retries_with_no_delay": 2, "ignore_subscription_override": True}}
    assert choose(own, ignoring).retries_with_no_delay == 2
    told = {"_retry_policy": {"retries_with_no_delay": 7, "ignore_subscription_override": True}}
    assert choose(told, {}) == RetryPolicy()
