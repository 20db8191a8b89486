"""Successful answers as Zaqar sends them: compact JSON bodies, and query strings for links."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

JSON = "application/json"


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def ok(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(document), status=status, content_type=JSON, headers=headers)


def no_content(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers)


def query_string(params: dict[str, Any]) -> str:
    """Falcon's `to_query_str`: booleans as `true`/`false`, empty when nothing to say."""
    if not params:
        return ""
    return "?" + urlencode(
        {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in params.items()}
    )
