"""The nesting limit, read before parsing: brackets in strings are text, deeper is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wire.errors import BadRequestBody
from wire.request import json_depth, parse_json

LIMIT = 32


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}  # arrays or objects, by parity
    return value


@pytest.mark.parametrize("depth", [1, 2, 31, 32, 33, 40, 500])
def test_the_depth_is_the_parsers(depth: int) -> None:
    raw = json.dumps(nested(depth)).encode()
    assert json_depth(raw, LIMIT) == (depth if depth > LIMIT else LIMIT)
    if depth <= LIMIT:
        assert parse_json(raw, LIMIT) == nested(depth)
    else:
        with pytest.raises(BadRequestBody, match="more than 32 deep"):
            parse_json(raw, LIMIT)


@pytest.mark.parametrize(
    "document",
    [
        {"a": "[" * 100},
        {"a": "]" * 100, "b": "{" * 100},
        {"a": '\\"[[[[' * 50},
        [{"k": [i, {"s": "}}]]"}]} for i in range(500)],
    ],
)
def test_brackets_in_strings_and_wide_documents_are_not_depth(document: Any) -> None:
    raw = json.dumps(document).encode()
    assert json_depth(raw, LIMIT) == LIMIT
    assert parse_json(raw, LIMIT) == document


def test_strings_do_not_hide_depth() -> None:
    raw = b'{"a": "' + b"]" * 60 + b'", "b": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}"
    assert json_depth(raw, LIMIT) == 41
    with pytest.raises(BadRequestBody):
        parse_json(raw, LIMIT)


def test_far_too_deep_never_reaches_the_parser() -> None:
    with pytest.raises(BadRequestBody, match="more than 32 deep"):
        parse_json(b"[" * 200_000 + b"]" * 200_000, LIMIT)
