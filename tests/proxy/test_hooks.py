"""Hooks (where authentication and rate limits plug in): the same steps on both servers, able
to change what is sent on and to refuse a request with a Zaqar error body."""

from __future__ import annotations

from pathlib import Path

from proxy.errors import NotAuthorized
from proxy.forward import Outgoing
from tests.conftest import FakeClock
from tests.proxy.cluster import cluster
from tests.proxy.conftest import call
from tests.proxy.test_forward import recording

TOKENS = {"t-alpha": "alpha", "t-beta": "beta"}
seen: list[str] = []


async def tenant_from_token(out: Outgoing) -> None:
    """What a token-checking hook does: the token, not the client, names the project."""
    token = out.headers.get("X-Auth-Token")
    if token not in TOKENS:
        raise NotAuthorized()
    out.headers["X-Project-ID"] = TOKENS[token]


async def remember(out: Outgoing) -> None:
    seen.append(f"{out.method} {out.path} {out.headers['X-Project-ID']}")


async def test_hooks_run_in_order_on_both_paths(tmp_path: Path, clock: FakeClock) -> None:
    nodes_saw: list[dict[str, str]] = []
    seen.clear()
    async with cluster(
        tmp_path, clock, hooks=(tenant_from_token, remember), wrap_node=recording(nodes_saw)
    ) as c:
        spoofed = {"X-Auth-Token": "t-alpha"}
        status, _, _ = await call(c.proxy, "PUT", "/v2/queues/q", headers=spoofed, project="beta")
        assert status == 201
        assert nodes_saw[-1]["X-Project-ID"] == "alpha"  # the lean path sent what the hook set
        assert await c.catalog.placement("alpha", "q") is not None
        assert await c.catalog.placement("beta", "q") is None
        # The listing is the app's (aiohttp's path): the same hooks decide its project.
        status, body, _ = await call(c.proxy, "GET", "/v2/queues", headers=spoofed, project="beta")
        assert status == 200 and [q["name"] for q in body["queues"]] == ["q"]
        assert seen == ["PUT /v2/queues/q alpha", "GET /v2/queues alpha"]


async def test_a_hook_refuses_with_the_error_table(tmp_path: Path, clock: FakeClock) -> None:
    async with cluster(tmp_path, clock, hooks=(tenant_from_token,)) as c:
        for path in ("/v2/queues/q", "/v2/queues"):  # lean path, then aiohttp's
            status, body, headers = await call(c.proxy, "GET", path)
            assert status == 403 and body["title"] == "Not authorized", path
            assert headers["X-Openstack-Request-ID"].startswith("req-")
