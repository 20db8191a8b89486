"""The error table: one answer per error, the same from the lean path (bytes) and aiohttp's."""

from __future__ import annotations

import json

from catalog.errors import NotFound
from proxy.errors import QueueFrozen, error_answer


def test_an_error_answer_is_the_same_as_bytes_and_as_a_response() -> None:
    answer = error_answer(QueueFrozen("Queue q kept moving."), "req-1")
    head, body = answer.encode("req-1").split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    response = answer.response()
    assert status_line == "HTTP/1.1 503 Service Unavailable" and response.status == 503
    assert body == response.body
    assert json.loads(body) == {
        "title": "Service temporarily unavailable",
        "description": "Queue q kept moving.",
    }
    # Header names in lower case, as Zaqar's server writes them (aiohttp's are lowered as the
    # answer goes out: wire.answers.zaqar_header_names).
    assert headers["content-type"] == response.content_type == "application/json"
    assert headers["retry-after"] == response.headers["Retry-After"] == "1"
    assert headers["x-openstack-request-id"] == "req-1"
    assert int(headers["content-length"]) == len(body)


def test_catalog_errors_keep_their_status() -> None:
    answer = error_answer(NotFound("No such partition."), "req-1")
    assert (answer.status, answer.title) == (404, "Not found")
    assert answer.encode("req-1").startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_unexpected_errors_never_show_their_text() -> None:
    answer = error_answer(RuntimeError("a secret"), "req-2")
    assert answer.status == 503 and answer.headers == {"Retry-After": "30"}
    assert "a secret" not in answer.description and "req-2" in answer.description
