"""The Keystone v3 client against a real Keystone: who may validate, and what it says about
valid, garbage, revoked and expired tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy.errors import IdentityUnavailable
from proxy.keystone import KeystoneClient, ServiceUser, identity_of, tokens_url, well_formed
from proxy.tokens import Identity, Refused
from tests.keystone import ALICE, BOB, SERVICE, Keystone
from tests.services import free_port

pytestmark = pytest.mark.keystone


def service_user(user: str = SERVICE.name, password: str = SERVICE.password) -> ServiceUser:
    return ServiceUser(user, password, project=SERVICE.project)


@pytest.fixture
async def client(keystone_server: Keystone) -> AsyncIterator[KeystoneClient]:
    validator = KeystoneClient(keystone_server.url, service_user(), timeout=10)
    yield validator
    await validator.close()


async def test_a_valid_token_gives_its_project_and_roles(
    client: KeystoneClient, keystone_server: Keystone
) -> None:
    verdict = await client.validate(keystone_server.token(ALICE))
    assert isinstance(verdict, Identity)
    assert verdict.project_id == keystone_server.projects["alpha"]
    assert "member" in verdict.roles and "admin" not in verdict.roles
    assert time.time() < verdict.expires_at <= time.time() + 3600


async def test_garbage_and_malformed_tokens_are_refused(client: KeystoneClient) -> None:
    assert await client.validate("gAAAAABgarbage") is Refused.TOKEN
    assert await client.validate("x" * 9000) is Refused.TOKEN  # never sent
    assert await client.validate("tök€n") is Refused.TOKEN
    assert await client.validate("") is Refused.TOKEN


async def test_a_revoked_token_is_refused(
    client: KeystoneClient, keystone_server: Keystone
) -> None:
    token = await asyncio.to_thread(keystone_server.login, BOB)
    assert isinstance(await client.validate(token), Identity)
    await asyncio.to_thread(keystone_server.revoke, token)
    assert await client.validate(token) is Refused.TOKEN


async def test_an_expired_token_is_refused(
    client: KeystoneClient, keystone_server: Keystone
) -> None:
    token, expires_at = await asyncio.to_thread(keystone_server.short_token, ALICE, 4.0)
    assert isinstance(await client.validate(token), Identity)
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)
    assert await client.validate(token) is Refused.TOKEN


async def test_the_service_user_logs_in_again_when_its_token_is_revoked(
    client: KeystoneClient, keystone_server: Keystone
) -> None:
    alice = keystone_server.token(ALICE)
    assert isinstance(await client.validate(alice), Identity)
    first = client._service_token
    assert first is not None
    await asyncio.to_thread(keystone_server.revoke, first)
    assert isinstance(await client.validate(alice), Identity)
    assert client._service_token not in (None, first)


async def test_a_token_may_validate_itself(keystone_server: Keystone) -> None:
    """Without a service user: Keystone's default policy lets a token's user validate it."""
    client = KeystoneClient(keystone_server.url, None, timeout=10)
    try:
        verdict = await client.validate(keystone_server.token(BOB))
        assert isinstance(verdict, Identity)
        assert verdict.project_id == keystone_server.projects["beta"]
        assert await client.validate("gAAAAABgarbage") is Refused.TOKEN  # 401 as itself
    finally:
        await client.close()


async def test_a_user_without_the_service_role_may_not_validate_others(
    keystone_server: Keystone,
) -> None:
    """Keystone's policy identity:validate_token: a plain member cannot validate another's
    token, so a misconfigured service user is an outage (503), not a refusal (401)."""
    client = KeystoneClient(
        keystone_server.url, ServiceUser(BOB.name, BOB.password, project=BOB.project), 10
    )
    try:
        with pytest.raises(IdentityUnavailable):
            await client.validate(keystone_server.token(ALICE))
    finally:
        await client.close()


async def test_a_wrong_service_password_is_an_outage(keystone_server: Keystone) -> None:
    client = KeystoneClient(keystone_server.url, service_user(password="wrong"), timeout=10)
    try:
        with pytest.raises(IdentityUnavailable, match="could not authenticate"):
            await client.validate(keystone_server.token(ALICE))
    finally:
        await client.close()


async def test_an_unreachable_keystone_is_an_outage() -> None:
    client = KeystoneClient(f"http://127.0.0.1:{free_port()}", service_user(), timeout=2)
    try:
        with pytest.raises(IdentityUnavailable, match="could not be reached"):
            await client.validate("gAAAAABsome-token")
    finally:
        await client.close()


def test_tokens_url() -> None:
    assert tokens_url("http://k:5000") == "http://k:5000/v3/auth/tokens"
    assert tokens_url("http://k:5000/v3/") == "http://k:5000/v3/auth/tokens"
    assert tokens_url("https://k/identity") == "https://k/identity/v3/auth/tokens"


def test_well_formed() -> None:
    assert well_formed("gAAAAAB-_=abc")
    assert not well_formed("a b\r\n") and not well_formed("")


def test_identity_of_a_token_without_project() -> None:
    document = {
        "token": {
            "user": {"id": "u1"},
            "roles": [{"id": "r", "name": "admin"}],
            "expires_at": "2030-01-01T00:00:00.000000Z",
            "system": {"all": True},
        }
    }
    found = identity_of(document)
    assert found.project_id is None and found.roles == ("admin",)
    assert found.expires_at == 1893456000.0
    with pytest.raises(IdentityUnavailable):
        identity_of({"token": {"user": {}}})
