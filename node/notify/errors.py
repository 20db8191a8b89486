"""The notification package's one error: a subscriber that could not be reached or refused."""

from __future__ import annotations


class DeliveryFailed(Exception):
    """One notification did not reach its subscriber; the retry policy says what next."""
