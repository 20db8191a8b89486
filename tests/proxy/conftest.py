"""Helpers for proxy tests: the usual Zaqar headers and a request shortcut."""

from __future__ import annotations

import json as jsonlib
from typing import Any

from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

CLIENT_ID = "3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60"
PROJECT = "tenant"
HEADERS = {"Client-ID": CLIENT_ID, "X-Project-ID": PROJECT}


async def call(
    client: TestClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    project: str = PROJECT,
) -> tuple[int, Any, CIMultiDict[str]]:
    sent = {**HEADERS, "X-Project-ID": project, **(headers or {})}
    async with client.request(method, path, json=json, headers=sent) as resp:
        raw = await resp.read()
        try:
            body = jsonlib.loads(raw) if raw else None
        except ValueError:
            body = raw
        return resp.status, body, CIMultiDict(resp.headers)  # names compared as HTTP does
