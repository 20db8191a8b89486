"""The OpenAPI 3.1 description of API v2 and the admin API (`wire/openapi.json`, package data).

The proxy serves it at `/openapi.json`; `tests/wire/test_openapi.py` holds it to the node's and
the proxy's route tables, and runs schemathesis against both from it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from aiohttp import web

PATH = "/openapi.json"


@cache
def document_bytes() -> bytes:
    return files("wire").joinpath("openapi.json").read_bytes()


def document() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(document_bytes())
    return parsed


async def handle(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")
