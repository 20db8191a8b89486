"""Reading a request: query parameters and JSON bodies, with Zaqar's errors for bad input."""

from __future__ import annotations

import json
import re
import sys
from itertools import accumulate
from typing import Any

from aiohttp import web

from wire.errors import ApiError, BadRequestBody

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})


class InvalidParam(ApiError):
    title = "Invalid parameter"


def param_str(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value if value else None


def param_int(request: web.Request, name: str) -> int | None:
    raw = param_str(request, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidParam(
            f'The "{name}" parameter is invalid. The value must be an integer.'
        ) from None


def param_bool(request: web.Request, name: str) -> bool | None:
    raw = param_str(request, name)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InvalidParam(
        f'The "{name}" parameter is invalid. The value of the parameter must be "true" or "false".'
    )


def param_list(request: web.Request, name: str) -> list[str] | None:
    """Comma-separated values, also accepting the parameter repeated."""
    raw = request.query.getall(name, [])
    items = [item.strip() for value in raw for item in value.split(",") if item.strip()]
    return items or None


def _int_within_range(text: str) -> int:
    value = int(text)
    if abs(value) > sys.maxsize:
        raise OverflowError(text)
    return value


# A JSON string (escapes included); every byte that is not a bracket; an innermost pair.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LEAVES = re.compile(rb"\[\]|\{\}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(raw: bytes, limit: int) -> int:
    """How deeply arrays and objects nest in `raw`, read without parsing it; any figure up to
    `limit` stands for "no deeper than `limit`" (`raw` need not be valid JSON)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return limit  # cannot nest deeper than it has brackets: the usual body stops here
    brackets = left = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):  # each pass removes the innermost level, in C
        if not left:
            return limit
        left = _LEAVES.sub(b"", left)
    if not left:
        return limit
    # Deeper, or brackets that do not pair (not JSON): the running count says which.
    return max(accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


def parse_json(raw: bytes, max_depth: int) -> Any:
    """`raw` parsed; 400 for a body that is not JSON, holds an integer out of range, or nests
    arrays and objects deeper than `max_depth` (checked first, so that neither the parser nor
    any answer that would carry the document later hits Python's recursion limit)."""
    if json_depth(raw, max_depth) > max_depth:
        raise BadRequestBody(f"JSON may not nest arrays and objects more than {max_depth} deep.")
    try:
        return json.loads(raw, parse_int=_int_within_range)
    except OverflowError:
        raise BadRequestBody("JSON contains integer that is too large.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequestBody("Request body could not be parsed.") from None


async def json_body(request: web.Request, max_depth: int) -> Any:
    """The parsed body; a missing body is an error (Zaqar's `deserialize`)."""
    if not request.body_exists:
        raise BadRequestBody("Request body can not be empty")
    return parse_json(await request.read(), max_depth)


async def read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, counted as it arrives (a chunked one declares no length); None as soon as it
    passes `limit` bytes, the rest unread."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.readany():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def optional_json_body(request: web.Request, max_depth: int) -> Any | None:
    """The parsed body, or None when the request has none (or an empty one)."""
    if not request.body_exists:
        return None
    raw = await request.read()
    return parse_json(raw, max_depth) if raw else None


def content_length(request: web.Request) -> int | None:
    return request.content_length
