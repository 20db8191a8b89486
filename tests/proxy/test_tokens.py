"""The token cache, on a fake clock: bounded, each validation kept until the earlier of the
token's expiry and the TTL, refusals remembered, no token kept as a key."""

from __future__ import annotations

import pytest

from proxy.tokens import Identity, Refused, TokenCache, token_key
from tests.conftest import FakeClock


def identity(clock: FakeClock, lifetime: float = 3600.0, project: str = "p") -> Identity:
    return Identity("u", project, ("member", "reader"), clock() + lifetime)


def test_a_validation_is_served_until_the_ttl(clock: FakeClock) -> None:
    cache = TokenCache(capacity=10, ttl=300, clock=clock)
    assert cache.get("t") is None
    cache.put("t", identity(clock))
    clock.advance(299.9)
    assert cache.get("t") == identity(clock, lifetime=3600 - 299.9)
    clock.advance(0.1)
    assert cache.get("t") is None  # asked of Keystone again: a revocation is seen by now
    assert len(cache) == 0


def test_a_validation_ends_when_its_token_expires(clock: FakeClock) -> None:
    cache = TokenCache(capacity=10, ttl=300, clock=clock)
    cache.put("t", identity(clock, lifetime=30))
    clock.advance(29.9)
    assert isinstance(cache.get("t"), Identity)
    clock.advance(0.1)
    assert cache.get("t") is None


def test_an_expired_token_is_not_kept(clock: FakeClock) -> None:
    cache = TokenCache(capacity=10, ttl=300, clock=clock)
    cache.put("t", identity(clock, lifetime=0))
    assert cache.get("t") is None and len(cache) == 0


def test_a_ttl_of_zero_keeps_nothing(clock: FakeClock) -> None:
    cache = TokenCache(capacity=10, ttl=0, clock=clock)
    cache.put("t", identity(clock))
    cache.put("bad", Refused.TOKEN)
    assert cache.get("t") is None and cache.get("bad") is None


def test_a_refusal_is_remembered_for_the_ttl(clock: FakeClock) -> None:
    cache = TokenCache(capacity=10, ttl=60, clock=clock)
    cache.put("bad", Refused.TOKEN)
    clock.advance(59)
    assert cache.get("bad") is Refused.TOKEN
    clock.advance(1)
    assert cache.get("bad") is None


def test_bounded_least_recently_used_goes_first(clock: FakeClock) -> None:
    cache = TokenCache(capacity=3, ttl=300, clock=clock)
    for token in ("a", "b", "c"):
        cache.put(token, identity(clock, project=token))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", identity(clock, project="d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(t) is not None for t in ("a", "c", "d")] == [True, True, True]


def test_a_flood_of_refused_tokens_does_not_evict_valid_ones(clock: FakeClock) -> None:
    cache = TokenCache(capacity=30, ttl=300, clock=clock)
    for n in range(30):
        cache.put(f"good{n}", identity(clock))
    for n in range(1000):
        cache.put(f"garbage{n}", Refused.TOKEN)
    assert all(isinstance(cache.get(f"good{n}"), Identity) for n in range(30))
    assert len(cache) == 30 + 3  # refusals have a tenth of the room
    assert cache.get("garbage999") is Refused.TOKEN
    assert cache.get("garbage0") is None


def test_a_token_seen_again_replaces_its_entry(clock: FakeClock) -> None:
    cache = TokenCache(capacity=2, ttl=300, clock=clock)
    cache.put("t", identity(clock, project="old"))
    cache.put("t", Refused.TOKEN)
    assert cache.get("t") is Refused.TOKEN and len(cache) == 1


def test_keys_are_digests_not_tokens(clock: FakeClock) -> None:
    cache = TokenCache(capacity=2, ttl=300, clock=clock)
    token = "gAAAAABsecret-token-value"
    cache.put(token, identity(clock))
    assert token_key(token) in cache._entries
    assert all(token.encode() not in key for key in cache._entries)
    assert len(token_key(token)) == 32


def test_capacity_of_at_least_one() -> None:
    with pytest.raises(ValueError):
        TokenCache(capacity=0, ttl=1)


def test_roles_header() -> None:
    assert Identity("u", "p", ("admin", "member"), 0).roles_header == "admin,member"
    assert Identity("u", None, (), 0).roles_header == ""
