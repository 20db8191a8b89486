"""The admin CLI's Keystone login from OS_* variables: the documents it sends, then against the
session's real Keystone through a proxy run with `--auth keystone`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from marconi.admin_client import AdminClient, Refused, Unreachable
from marconi.login import credentials, tokens_url
from tests.conftest import FakeClock
from tests.keystone import ADMIN, ALICE, Keystone, User
from tests.proxy.cluster import cluster
from tests.proxy.keystone import keystone_settings
from tests.services import free_port


def test_no_variables_no_login() -> None:
    assert credentials({}) is None
    assert credentials({"OS_AUTH_URL": "http://k:5000"}) is None  # nobody to log in as


def test_password_scoped_to_a_project_by_name() -> None:
    env = {"OS_AUTH_URL": "http://k", "OS_USERNAME": "ops", "OS_PASSWORD": "pw"}
    auth = credentials({**env, "OS_PROJECT_NAME": "p"})
    assert auth == {
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": "ops", "password": "pw", "domain": {"name": "Default"}}},
        },
        "scope": {"project": {"name": "p", "domain": {"name": "Default"}}},
    }


def test_system_scope_and_application_credentials() -> None:
    system = credentials({"OS_AUTH_URL": "http://k", "OS_USERNAME": "a", "OS_SYSTEM_SCOPE": "all"})
    assert system is not None and system["scope"] == {"system": {"all": True}}
    app = credentials(
        {
            "OS_AUTH_URL": "http://k",
            "OS_USERNAME": "ignored",
            "OS_APPLICATION_CREDENTIAL_ID": "abc",
            "OS_APPLICATION_CREDENTIAL_SECRET": "s3",
        }
    )
    assert app == {
        "identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": "abc", "secret": "s3"},
        }
    }


def test_the_v3_path_is_added_once() -> None:
    assert tokens_url("http://k:5000") == "http://k:5000/v3/auth/tokens"
    assert tokens_url("http://k:5000/v3/") == "http://k:5000/v3/auth/tokens"


def as_user(monkeypatch: pytest.MonkeyPatch, keystone: Keystone, user: User) -> None:
    monkeypatch.delenv("MARCONI_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("OS_AUTH_URL", keystone.url)
    monkeypatch.setenv("OS_USERNAME", user.name)
    monkeypatch.setenv("OS_PASSWORD", user.password)
    monkeypatch.setenv("OS_PROJECT_NAME", user.project)


@pytest.mark.keystone
async def test_the_cli_logs_in_with_os_variables(
    tmp_path: Path, clock: FakeClock, keystone_server: Keystone, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cluster(tmp_path, clock, **keystone_settings(keystone_server)) as c:
        url = str(c.proxy.make_url("")).rstrip("/")

        as_user(monkeypatch, keystone_server, ADMIN)
        admin = AdminClient(url)
        names = {p["name"] for p in await asyncio.to_thread(admin.partitions)}
        assert names == {"p1", "p2"}
        assert admin.token  # one login, kept for the next requests
        token = admin.token
        await asyncio.to_thread(admin.health)
        assert admin.token == token

        as_user(monkeypatch, keystone_server, ALICE)  # a member, not an admin
        with pytest.raises(Refused) as refused:
            await asyncio.to_thread(AdminClient(url).partitions)
        assert refused.value.status == 403

        monkeypatch.setenv("OS_PASSWORD", "wrong")
        with pytest.raises(Refused) as refused:
            await asyncio.to_thread(AdminClient(url).partitions)
        assert refused.value.status == 401
        assert "refused the OS_* credentials" in str(refused.value)
        assert "wrong" not in str(refused.value)

        monkeypatch.setenv("OS_AUTH_URL", f"http://127.0.0.1:{free_port()}")
        with pytest.raises(Unreachable) as unreachable:
            await asyncio.to_thread(AdminClient(url, timeout=2).partitions)
        assert unreachable.value.exit_code == 3
