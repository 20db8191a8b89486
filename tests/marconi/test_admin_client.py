"""The client's error translation: one exception, and one exit code, per kind of failure."""

from __future__ import annotations

import asyncio

import pytest

from marconi import admin_client
from marconi.admin_client import AdminClient, Invalid, Refused, Unreachable, segment
from tests.marconi.fake_admin import FakeAdmin
from tests.services import free_port


def test_segments() -> None:
    assert segment("") == "_"
    assert segment("_") == "_"
    assert segment("a/b c") == "a%2Fb%20c"


async def test_a_request_the_cluster_calls_invalid_is_refused(
    admin: tuple[FakeAdmin, str],
) -> None:
    """Exit 2 is for what the CLI itself finds wrong; a 400 is the cluster refusing (exit 1)."""
    client = AdminClient(admin[1])
    with pytest.raises(Refused) as caught:
        await asyncio.to_thread(client.request, "PUT", "/admin/partitions/p1", {"nodes": []})
    assert caught.value.exit_code == 1
    assert caught.value.status == 400
    assert str(caught.value) == "A partition needs at least one node."


async def test_without_the_admin_role_it_is_refused(
    admin: tuple[FakeAdmin, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_client, "ADMIN_HEADERS", {"Accept": "application/json"})
    with pytest.raises(Refused) as caught:
        await asyncio.to_thread(AdminClient(admin[1]).partitions)
    assert (caught.value.status, caught.value.exit_code) == (403, 1)
    assert "admin role" in str(caught.value)


async def test_a_503_means_unreachable(admin: tuple[FakeAdmin, str]) -> None:
    admin[0].unavailable = True
    with pytest.raises(Unreachable) as caught:
        await asyncio.to_thread(AdminClient(admin[1]).pins)
    assert caught.value.exit_code == 3


async def test_health_reads_a_503_report(admin: tuple[FakeAdmin, str]) -> None:
    """A proxy may answer its health check 503 with the report: the report still counts, but a
    503 with an error body is a failure."""
    fake, url = admin
    fake.health_status = 503
    assert await asyncio.to_thread(AdminClient(url).health) == fake.health
    fake.unavailable = True
    with pytest.raises(Unreachable, match="catalog is unreachable"):
        await asyncio.to_thread(AdminClient(url).health)


def test_closed_port_and_bad_url() -> None:
    with pytest.raises(Unreachable):
        AdminClient(f"http://127.0.0.1:{free_port()}", timeout=2).partitions()
    with pytest.raises(Invalid):
        AdminClient("not-a-url").partitions()
