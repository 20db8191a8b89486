"""Per-project limits in the proxy: a request rate (token bucket) and a number of requests in
flight. Both are off by default; a project over either gets 429 with `Retry-After`.

Limits count per proxy process: with N proxies behind a load balancer a project may reach N times
the configured rate. That keeps the request path free of any shared state.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from ground.logs import get_logger
from proxy.errors import OverLimit
from proxy.forward import Outgoing
from proxy.hooks import Hook, Release
from proxy.probes import PROBES
from proxy.settings import LimitSettings

log = get_logger("proxy")
Clock = Callable[[], float]
UNLIMITED = ("/metrics", "/admin", *PROBES)  # the proxy's own endpoints: no project to charge

LIMITED = Counter(
    "marconi_proxy_limited_requests_total",
    "Requests refused with 429 because their project was over a limit, by limit.",
    ["limit"],
)
LIMITED.labels("rate"), LIMITED.labels("concurrency")  # exported at 0 before the first refusal
TRACKED = Gauge(
    "marconi_proxy_limited_projects",
    "Projects whose request rate or requests in flight this proxy currently tracks.",
)
IN_FLIGHT = Gauge(
    "marconi_proxy_project_requests_in_flight",
    "Requests in flight, summed over projects (counted only while a concurrency limit is set).",
)
WARN_EVERY = 10.0  # seconds between two warnings about the same project


@dataclass(slots=True)
class _Project:
    tokens: float
    refilled: float  # clock reading when `tokens` was last brought up to date
    in_flight: int = 0
    warned: float = -math.inf


class ProjectLimits:
    """The limits of every project this proxy has seen lately, in bounded memory."""

    def __init__(self, settings: LimitSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._projects: OrderedDict[str, _Project] = OrderedDict()

    def __len__(self) -> int:
        return len(self._projects)

    def acquire(self, project: str) -> Release | None:
        """Let one request of `project` through, or raise `OverLimit`. With an in-flight limit,
        the request counts until the returned release is called (once)."""
        state = self._take(project)
        if self.settings.concurrency <= 0:
            return None
        state.in_flight += 1
        IN_FLIGHT.inc()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                state.in_flight -= 1
                IN_FLIGHT.dec()

        return release

    def _take(self, project: str) -> _Project:
        now = self._clock()
        state = self._state(project, now)
        limits = self.settings
        if limits.concurrency > 0 and state.in_flight >= limits.concurrency:
            self._refuse(
                state,
                "concurrency",
                project,
                1,
                f"Project {project or '(none)'} already has {state.in_flight} requests in "
                f"flight, its limit. Please retry once some have completed.",
                now,
            )
        if limits.rate > 0:
            state.tokens = min(limits.capacity, state.tokens + (now - state.refilled) * limits.rate)
            state.refilled = now
            if state.tokens < 1.0:
                wait = math.ceil((1.0 - state.tokens) / limits.rate)
                self._refuse(
                    state,
                    "rate",
                    project,
                    wait,
                    f"Project {project or '(none)'} is over its limit of {limits.rate:g} "
                    f"requests per second. Please retry in {wait} seconds.",
                    now,
                )
            state.tokens -= 1.0
        return state

    def _state(self, project: str, now: float) -> _Project:
        state = self._projects.get(project)
        if state is not None:
            self._projects.move_to_end(project)
            return state
        state = self._projects[project] = _Project(self.settings.capacity, now)
        self._forget()
        TRACKED.set(len(self._projects))
        return state

    def _forget(self) -> None:
        """Drop the least recently seen projects beyond the bound, except those with requests in
        flight (forgetting them would lose their count). A forgotten project starts again with a
        full bucket, which is what it would have had after a pause anyway."""
        excess = len(self._projects) - self.settings.projects
        if excess <= 0:
            return
        idle = []
        for name, state in self._projects.items():
            if state.in_flight == 0:
                idle.append(name)
                if len(idle) == excess:
                    break
        for name in idle:
            del self._projects[name]

    def _refuse(
        self, state: _Project, limit: str, project: str, wait: int, description: str, now: float
    ) -> None:
        LIMITED.labels(limit).inc()
        if now - state.warned >= WARN_EVERY:
            state.warned = now
            log.warning("project_limited", project=project, limit=limit, retry_after=wait)
        raise OverLimit(limit, wait, description)


def limits_hook(limits: ProjectLimits) -> Hook:
    """Charge every API request to its project (`X-Project-ID`, set from the token when
    authentication is on): a hook after authentication's (proxy.hooks)."""

    async def hook(out: Outgoing) -> Release | None:
        if out.path.startswith(UNLIMITED):
            return None
        return limits.acquire(out.headers.get("X-Project-ID", ""))

    return hook
