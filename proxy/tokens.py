"""What a validated token says (`Identity`), and the bounded cache of validations.

A validation is kept until the token expires, but never longer than the cache TTL: a token
revoked in Keystone is refused again within that TTL (keystonemiddleware makes the same
trade-off). A token Keystone refused is remembered too, for the same TTL, so a client repeating
a bad token does not cost a Keystone call each time. Refusals live in an LRU of their own, a
tenth of the size, so that a flood of made-up tokens cannot push valid ones out. Keys are SHA-256
digests: the cache holds no token.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token speaks for; `project_id` is None for a token scoped to no project."""

    user_id: str
    project_id: str | None
    roles: tuple[str, ...]
    expires_at: float  # Unix time

    @property
    def roles_header(self) -> str:
        return ",".join(self.roles)


class Refused(Enum):
    """A token Keystone refused (invalid, expired or revoked)."""

    TOKEN = "refused"


@dataclass(frozen=True, slots=True)
class _Entry:
    verdict: Identity | Refused
    keep_until: float


def token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenCache:
    """LRUs of token validations, each dropped at the earlier of its expiry and its TTL."""

    def __init__(self, capacity: int, ttl: float, clock: Clock = time.time) -> None:
        if capacity < 1:
            raise ValueError("a token cache holds at least one token")
        self.capacity = capacity
        self.refusal_capacity = max(1, capacity // 10)
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()  # identities
        self._refusals: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries) + len(self._refusals)

    def get(self, token: str) -> Identity | Refused | None:
        """The cached verdict on `token`, or None when it must be asked of Keystone."""
        key = token_key(token)
        for entries in (self._entries, self._refusals):
            entry = entries.get(key)
            if entry is None:
                continue
            if self.clock() >= entry.keep_until:
                del entries[key]
                return None
            entries.move_to_end(key)
            return entry.verdict
        return None

    def put(self, token: str, verdict: Identity | Refused) -> None:
        now = self.clock()
        keep_until = now + self.ttl
        if isinstance(verdict, Identity):
            keep_until = min(keep_until, verdict.expires_at)
        if keep_until <= now:
            return  # already expired, or a TTL of 0: caching is off
        key = token_key(token)
        refused = isinstance(verdict, Refused)
        entries, other = (
            (self._refusals, self._entries) if refused else (self._entries, self._refusals)
        )
        other.pop(key, None)
        entries[key] = _Entry(verdict, keep_until)
        entries.move_to_end(key)
        capacity = self.refusal_capacity if refused else self.capacity
        while len(entries) > capacity:
            entries.popitem(last=False)
