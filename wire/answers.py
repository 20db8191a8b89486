"""Successful answers as Zaqar sends them: compact JSON bodies, query strings for links, and
header names in the case Zaqar's server writes them."""

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


# Zaqar's server (falcon under wsgiref) writes the names of the headers falcon sets in lower
# case (`content-type`, `location`, ...) and its own two, Date and Server, capitalized. Some
# clients, and Zaqar's own v1/v1.1 functional tests, compare names case-sensitively.
SERVER_NAMES = {"date": "Date", "server": "Server"}


def zaqar_name(name: str) -> str:
    """A header name as Zaqar's server writes it."""
    lower = name.lower()
    return SERVER_NAMES.get(lower, lower)


async def zaqar_header_names(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` signal: every header name of the answer as Zaqar's server
    writes it (aiohttp has added its own headers by then; they go out right after)."""
    headers = response.headers
    named = [(zaqar_name(k), v) for k, v in headers.items()]
    headers.clear()
    headers.extend(named)
