"""Per-project limits: the token bucket and the in-flight count on a fake clock, then through a
proxy in front of real nodes, one project driven past its limit while another is unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from ground.types import Handler
from proxy.errors import OverLimit
from proxy.limits import ProjectLimits
from proxy.settings import LimitSettings
from tests.conftest import FakeClock
from tests.proxy.cluster import NodeWrapper, cluster
from tests.proxy.conftest import call


@contextmanager
def admit(limits: ProjectLimits, project: str) -> Iterator[None]:
    """One request of `project`, in flight for the length of the block."""
    release = limits.acquire(project)
    try:
        yield
    finally:
        if release is not None:
            release()


def admitted(limits: ProjectLimits, project: str, times: int) -> int:
    """How many of `times` requests in a row get through (each completes at once)."""
    through = 0
    for _ in range(times):
        try:
            with admit(limits, project):
                through += 1
        except OverLimit:
            pass
    return through


def test_rate_allows_the_burst_then_refills_at_the_rate(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(rate=2.0, burst=5), clock)
    assert admitted(limits, "a", 8) == 5
    clock.advance(1.0)  # two tokens back
    assert admitted(limits, "a", 3) == 2
    clock.advance(100.0)  # never more than the burst
    assert admitted(limits, "a", 10) == 5


def test_refusal_says_when_to_retry(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(rate=0.25, burst=1), clock)
    assert admitted(limits, "a", 1) == 1
    clock.advance(1.0)  # a quarter of a token back: three quarters at 0.25/s is 3 s
    with pytest.raises(OverLimit) as refused, admit(limits, "a"):
        pass
    assert refused.value.status == 429
    assert refused.value.retry_after == "3"
    assert refused.value.limit == "rate"
    clock.advance(3.0)
    assert admitted(limits, "a", 1) == 1


def test_projects_have_separate_buckets(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(rate=1.0, burst=3), clock)
    assert admitted(limits, "noisy", 10) == 3
    assert admitted(limits, "quiet", 3) == 3


def test_burst_defaults_to_the_rate(clock: FakeClock) -> None:
    assert admitted(ProjectLimits(LimitSettings(rate=4.0), clock), "a", 10) == 4
    assert admitted(ProjectLimits(LimitSettings(rate=0.5), clock), "b", 10) == 1


def test_in_flight_limit_counts_until_the_request_completes(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(concurrency=2), clock)
    with admit(limits, "a"), admit(limits, "a"):
        with pytest.raises(OverLimit) as refused, admit(limits, "a"):
            pass
        assert refused.value.limit == "concurrency"
        assert admitted(limits, "b", 1) == 1  # another project is not counted against "a"
    assert admitted(limits, "a", 3) == 3  # both completed: room again


def test_a_failing_request_still_leaves_the_count(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(concurrency=1), clock)
    with pytest.raises(RuntimeError), admit(limits, "a"):
        raise RuntimeError("the node went away")
    assert admitted(limits, "a", 1) == 1


def test_refused_by_concurrency_spends_no_token(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(rate=1.0, burst=2, concurrency=1), clock)
    with admit(limits, "a"):
        assert admitted(limits, "a", 5) == 0
    assert admitted(limits, "a", 5) == 1  # one token was spent above, one is left


def test_memory_is_bounded_and_busy_projects_are_kept(clock: FakeClock) -> None:
    limits = ProjectLimits(LimitSettings(rate=1.0, burst=1, concurrency=1, projects=3), clock)
    with admit(limits, "busy"):
        for n in range(10):
            admitted(limits, f"p{n}", 1)
        assert len(limits) == 3
        assert admitted(limits, "busy", 1) == 0  # its in-flight count survived the churn
    # A forgotten project comes back with a full bucket.
    assert admitted(limits, "p0", 2) == 1


async def test_one_project_past_its_limit_does_not_slow_another(
    tmp_path: Path, clock: FakeClock
) -> None:
    rate = LimitSettings(rate=0.1, burst=3)  # a token every 10 s: no refill during the test
    async with cluster(tmp_path, clock, limits=rate) as c:
        answers = [
            await call(c.proxy, "GET", "/v2/queues/q/messages", project="noisy") for _ in range(5)
        ]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
        status, body, headers = answers[3]
        assert body["title"] == "Too many requests"
        assert "0.1 requests per second" in body["description"]
        assert 1 <= int(headers["Retry-After"]) <= 10
        for _ in range(3):
            assert (await call(c.proxy, "GET", "/v2/queues/q/messages", project="quiet"))[0] == 200
        # The proxy's own endpoints are not charged to anyone.
        async with c.proxy.get("/metrics", headers={"X-Project-ID": "noisy"}) as resp:
            assert resp.status == 200
            text = await resp.text()
        assert 'marconi_proxy_limited_requests_total{limit="rate"}' in text


def held_node(release: asyncio.Event, arrived: asyncio.Queue[str]) -> NodeWrapper:
    """Wrap each node so that requests carrying `X-Hold` wait for `release`."""

    def wrap(app: web.Application, name: str) -> web.Application:
        @web.middleware
        async def hold(request: web.Request, handler: Handler) -> web.StreamResponse:
            if "X-Hold" in request.headers:
                arrived.put_nowait(request.headers["X-Project-ID"])
                await release.wait()
            return await handler(request)

        app.middlewares.insert(0, hold)
        return app

    return wrap


async def test_in_flight_limit_through_the_proxy(tmp_path: Path, clock: FakeClock) -> None:
    release = asyncio.Event()
    arrived: asyncio.Queue[str] = asyncio.Queue()
    limits = LimitSettings(concurrency=2)
    async with cluster(tmp_path, clock, limits=limits, wrap_node=held_node(release, arrived)) as c:
        path = "/v2/queues/q/messages"
        held = [
            asyncio.create_task(call(c.proxy, "GET", path, project="busy", headers={"X-Hold": "1"}))
            for _ in range(2)
        ]
        for _ in held:
            assert await asyncio.wait_for(arrived.get(), 10) == "busy"
        status, body, headers = await call(c.proxy, "GET", path, project="busy")
        assert status == 429
        assert "in flight" in body["description"]
        assert headers["Retry-After"] == "1"
        assert (await call(c.proxy, "GET", path, project="other"))[0] == 200
        release.set()
        assert [(await task)[0] for task in held] == [200, 200]
        assert (await call(c.proxy, "GET", path, project="busy"))[0] == 200
