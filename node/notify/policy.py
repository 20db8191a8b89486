"""Zaqar's `_retry_policy`: when a failed notification is tried again, as a pure schedule.

Zaqar (`zaqar/notification/tasks/webhook.py`) retries a failed post in four phases: a few
times at once, a few times after `minimum_delay` seconds each, then after each delay a backoff
function draws between `minimum_delay` and `maximum_delay` (one step every
`BACKOFF_INTERVAL` seconds of that range), then a few times after `maximum_delay` each; then it
gives up. The policy is the subscription's `_retry_policy` option, or the queue's metadata
`_retry_policy` when the subscription has none or either says `ignore_subscription_override`.
Here the same schedule is computed once, as a list of delays, so that a deliverer stores the
next attempt's time instead of sleeping in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Zaqar's defaults (zaqar/common/consts.py).
RETRIES_WITH_NO_DELAY = 3
MINIMUM_DELAY_RETRIES = 3
MINIMUM_DELAY = 5
MAXIMUM_DELAY = 30
MAXIMUM_DELAY_RETRIES = 3
BACKOFF_INTERVAL = 5  # Zaqar's LINEAR_INTERVAL: the backoff range is cut into steps this wide


def _steps(low: int, high: int) -> int:
    return int((high - low) / BACKOFF_INTERVAL)


def linear(low: int, high: int) -> list[int]:
    """`low`, `low + 5`, ... below `high`."""
    return list(range(low, high, BACKOFF_INTERVAL))


def geometric(low: int, high: int) -> list[int]:
    """`n` delays growing by a constant ratio from `low` to `high` (`n` the linear steps);
    Zaqar's `exponential` draws the very same curve."""
    n = _steps(low, high)
    if n < 2 or low <= 0:
        return [low] * n
    ratio = math.pow(10, math.log10(high / low) / (n - 1))
    return [int(low * math.pow(ratio, a - 1)) for a in range(1, n + 1)]


def arithmetic(low: int, high: int) -> list[int]:
    """`n` delays from `low` to `high` whose gaps grow by a constant difference."""
    n = _steps(low, high)
    if n < 2:
        return [low] * n
    step = 2.0 * (high - low) / (n * (n - 1))
    return [int(low + (a - 1) * a * step / 2) for a in range(1, n + 1)]


BACKOFF: dict[str, Callable[[int, int], list[int]]] = {
    "linear": linear,
    "arithmetic": arithmetic,
    "geometric": geometric,
    "exponential": geometric,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries_with_no_delay: int = RETRIES_WITH_NO_DELAY
    minimum_delay_retries: int = MINIMUM_DELAY_RETRIES
    minimum_delay: int = MINIMUM_DELAY
    maximum_delay: int = MAXIMUM_DELAY
    maximum_delay_retries: int = MAXIMUM_DELAY_RETRIES
    retry_backoff_function: str = "linear"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """A policy from a `_retry_policy` object; what it leaves out (or gives in a type that
        cannot be one) keeps Zaqar's default."""
        values: dict[str, Any] = {}
        for name, default in (
            ("retries_with_no_delay", RETRIES_WITH_NO_DELAY),
            ("minimum_delay_retries", MINIMUM_DELAY_RETRIES),
            ("minimum_delay", MINIMUM_DELAY),
            ("maximum_delay", MAXIMUM_DELAY),
            ("maximum_delay_retries", MAXIMUM_DELAY_RETRIES),
        ):
            value = options.get(name, default)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            values[name] = int(value) if ok else default
        function = options.get("retry_backoff_function", "linear")
        values["retry_backoff_function"] = function if function in BACKOFF else "linear"
        return cls(**values)

    def schedule(self) -> list[int]:
        """The delay (seconds) before each retry after a first failed attempt, in order; the
        notification is given up once they are all spent."""
        backoff = BACKOFF[self.retry_backoff_function](self.minimum_delay, self.maximum_delay)
        return (
            [0] * self.retries_with_no_delay
            + [self.minimum_delay] * self.minimum_delay_retries
            + backoff
            + [self.maximum_delay] * self.maximum_delay_retries
        )


def choose(subscription: Mapping[str, Any], queue: Mapping[str, Any]) -> RetryPolicy:
    """The policy that governs a subscription's retries: its own `_retry_policy`, unless it has
    none or either policy says `ignore_subscription_override`, when the queue's rules."""
    own = subscription.get("_retry_policy")
    own = own if isinstance(own, Mapping) else {}
    queue_policy = queue.get("_retry_policy")
    queue_policy = queue_policy if isinstance(queue_policy, Mapping) else {}
    if own.get("ignore_subscription_override") or queue_policy.get("ignore_subscription_override"):
        return RetryPolicy.from_options(queue_policy)
    return RetryPolicy.from_options(own or queue_policy)


def next_delay(policy: RetryPolicy, failures: int) -> int | None:
    """Seconds to wait before trying again after `failures` failed attempts (1 after the first
    one); None when the policy's retries are spent."""
    delays = policy.schedule()
    return delays[failures - 1] if 0 < failures <= len(delays) else None
