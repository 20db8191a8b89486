"""Steps every client request passes before the proxy routes it (authentication, rate limits).

A hook is `async def hook(out: Outgoing) -> Release | None`. It sees the request's method, raw
path and end-to-end headers (the request id among them; the body only on the lean path, where it
was read first), may change the headers sent on (say `X-Project-ID` and `X-Roles` from a
validated token), and refuses a request by raising a `ProxyError` subclass, which the one error
table turns into HTTP. A hook that holds something for the request's duration (a per-project
count of requests in flight) returns a `Release`, called once the request is answered, failed or
abandoned; if a later hook refuses the request, the earlier ones' releases run at once. Hooks run
in order, after the request id and metrics and inside the error handling, on both servers: both
run them through `proxy.steps.Steps.admit`, so each is written once.

Cost: with any hook, every lean request runs in a task (the usual path answers in callbacks
only without hooks), which costs some CPU per request, plus the hooks' own work.
A hook that answers from memory most of the time (a token cache) keeps that cost small.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from proxy.forward import Outgoing

Release = Callable[[], None]
Hook = Callable[[Outgoing], Awaitable[Release | None]]


async def run_hooks(hooks: Sequence[Hook], out: Outgoing) -> list[Release]:
    """Run the hooks in order; the releases to call once the request is over."""
    releases: list[Release] = []
    try:
        for hook in hooks:
            release = await hook(out)
            if release is not None:
                releases.append(release)
    except BaseException:
        release_all(releases)
        raise
    return releases


def release_all(releases: Sequence[Release]) -> None:
    for release in reversed(releases):
        release()
