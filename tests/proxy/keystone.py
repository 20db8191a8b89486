"""Helpers for proxy tests against the session's real Keystone."""

from __future__ import annotations

import json as jsonlib
from typing import Any

from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from proxy.settings import AuthMode
from tests.keystone import SERVICE, Keystone
from tests.proxy.conftest import CLIENT_ID


def keystone_settings(keystone: Keystone, **extra: Any) -> dict[str, Any]:
    """Proxy settings for `--auth keystone` with the test service user."""
    return {
        "auth": AuthMode.KEYSTONE,
        "keystone_url": keystone.url,
        "keystone_username": SERVICE.name,
        "keystone_password": SERVICE.password,
        "keystone_project": SERVICE.project,
        **extra,
    }


async def send(
    client: TestClient,
    method: str,
    path: str,
    *,
    token: str | None,
    project: str | None = None,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, CIMultiDict[str]]:
    """One request with a token (or none) and X-Project-ID only when `project` is given."""
    sent = {"Client-ID": CLIENT_ID, **(headers or {})}
    if token is not None:
        sent["X-Auth-Token"] = token
    if project is not None:
        sent["X-Project-ID"] = project
    async with client.request(method, path, json=json, data=data, headers=sent) as resp:
        raw = await resp.read()
        try:
            body = jsonlib.loads(raw) if raw else None
        except ValueError:
            body = raw
        return resp.status, body, CIMultiDict(resp.headers)  # names compared as HTTP does
