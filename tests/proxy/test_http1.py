"""The lean path's HTTP/1.1 reading: what it takes, what it leaves to aiohttp, what it relays."""

from __future__ import annotations

import pytest

from proxy.http1 import (
    MAX_HEAD,
    Unusual,
    encode_response,
    parse_lines,
    parse_request,
    parse_response,
    response_headers,
)
from wire.limits import MAX_BODY

POST = (
    b"POST /v2/queues/q/messages?x=1 HTTP/1.1\r\n"
    b"Host: proxy:8888\r\n"
    b"Client-ID: 3b8a7c52-52f1-4a3b-9e7f-1d2c3b4a5f60\r\n"
    b"X-Project-ID: tenant\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"hello"
)


def test_a_usual_request_goes_on_verbatim_but_its_host() -> None:
    head = parse_request(POST)
    assert head is not None
    assert (head.method, head.target, head.length) == ("POST", "/v2/queues/q/messages?x=1", 5)
    assert (head.project, head.request_id) == ("tenant", None)
    assert head.verbatim and head.size == len(POST) - 5
    assert head.lines == POST[: head.size - 2].replace(b"Host: proxy:8888\r\n", b"")


def test_incomplete_heads_wait_for_more() -> None:
    assert parse_request(POST[:30]) is None
    assert parse_request(b"GET /v2/queues/q HTTP/1.1\r\nHost: a\r\n") is None


def test_values_are_read_case_insensitively_and_trimmed() -> None:
    head = parse_request(
        b"GET /v2/queues/q HTTP/1.1\r\nx-project-id: \t p\xc3\xa9 \r\n"
        b"X-OPENSTACK-REQUEST-ID: req-1\r\n\r\n"
    )
    assert head is not None
    assert (head.project, head.request_id, head.length) == ("p\u00e9", "req-1", 0)


def test_rarer_hop_by_hop_headers_are_dropped() -> None:
    head = parse_request(
        b"PUT /v2/queues/q HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
        b"Proxy-Authorization: secret\r\nTE: trailers\r\nX-Custom: kept\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert head is not None and not head.verbatim and head.length == 2
    assert head.lines == b"X-Custom: kept\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /q HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        b"GET /q HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /q HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /q HTTP/1.0\r\n\r\n",
        b"OPTIONS /q HTTP/1.1\r\n\r\n",
        b"GET http://a/q HTTP/1.1\r\n\r\n",
        b"GET  /q HTTP/1.1\r\n\r\n",
        b"GET /q HTTP/1.1\r\nA: b\nX-Project-ID: other\r\n\r\n",  # bare LF
        b"GET /q HTTP/1.1\r\nA: b\rX-Project-ID: other\r\n\r\n",  # bare CR
        b"GET /q HTTP/1.1\r\nA: b\x00\r\n\r\n",
        b"GET /q HTTP/1.1\r\nA: b\r\n c\r\n\r\n",  # folded
        b"GET /q HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
        b"POST /q HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST /q HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /q HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
        b"POST /q HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        b"GET /q HTTP/1.1\r\nA: " + b"x" * MAX_HEAD + b"\r\n\r\n",
        b"GET /q HTTP/1.1\r\nA: " + b"x" * MAX_HEAD,  # never ends
    ],
)
def test_anything_unusual_is_left_to_aiohttp(raw: bytes) -> None:
    with pytest.raises(Unusual):
        parse_request(raw)


def headers(count: int, line: bytes = b"X-A: b") -> bytes:
    """A request head of `count` header lines (Host among them)."""
    return b"GET /q HTTP/1.1\r\nHost: a\r\n" + (line + b"\r\n") * (count - 1) + b"\r\n"


# What aiohttp's parser refuses with a 400, the lean path leaves to it.
MALFORMED = {
    "control character in a value": headers(2, b"X-A: a\x01b"),
    "DEL in a value": headers(2, b"X-A: a\x7fb"),
    "control character in the target": b"GET /q\x1b HTTP/1.1\r\nHost: a\r\n\r\n",
    "invalid header name": headers(2, b"X@A: b"),
    "empty header name": headers(2, b": b"),
    "line without a colon": headers(2, b"X-A b"),
    "line over 8190 bytes": headers(2, b"X-A: " + b"x" * 8191),
    "target over 8190 bytes": b"GET /" + b"q" * 8190 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "more than 100 headers": headers(101),
    "a second Host": headers(1)[:-2] + b"host: b\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_heads_are_left_to_aiohttp(raw: bytes) -> None:
    with pytest.raises(Unusual):
        parse_request(raw)


def test_heads_at_the_limits_are_taken() -> None:
    for raw in (
        headers(100),
        headers(2, b"X-A: " + b"x" * 8185),  # a line of 8190 bytes
        headers(2, b"X-A: a\tb \xc3\xa9"),  # tabs and non-ASCII bytes are values' own
    ):
        head = parse_request(raw)
        assert head is not None and head.size == len(raw)


def test_header_lines_decode_as_aiohttp_does_without_hop_by_hop() -> None:
    headers = parse_lines(b"Host: a\r\nX-Project-ID:  t\xc3\xa9 \r\nContent-Length: 3\r\nB: 1\r\n")
    assert list(headers.items()) == [("X-Project-ID", "t\u00e9"), ("B", "1")]


CREATED = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Type: application/json\r\n"
    b"X-Openstack-Request-ID: req-1\r\n"
    b"Content-Length: 2\r\n"
    b"\r\n"
    b"{}"
)


def test_a_usual_answer_is_relayed_as_it_came() -> None:
    head = parse_response(CREATED)
    assert head is not None
    assert (head.status, head.length, head.keep_alive, head.fence) == (201, 2, True, None)
    assert head.request_id and head.head == CREATED[:-2] and head.size == len(CREATED) - 2
    assert head.body_length("POST") == 2 and head.body_length("HEAD") == 0
    assert parse_response(CREATED[:20]) is None


def test_connection_close_is_kept_from_the_client_and_ends_the_node_connection() -> None:
    raw = b"HTTP/1.1 204 No Content\r\nConnection: close\r\nKeep-Alive: x\r\nServer: s\r\n\r\n"
    head = parse_response(raw)
    assert head is not None and not head.keep_alive and not head.request_id
    assert head.head == b"HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n"
    assert head.body_length("GET") == 0


def test_a_fence_is_read_from_503_answers_only() -> None:
    fenced = (
        b"HTTP/1.1 503 Service Unavailable\r\nX-Marconi-Fence: frozen\r\nContent-Length: 0\r\n\r\n"
    )
    head = parse_response(fenced)
    assert head is not None and head.fence == "frozen"
    odd = parse_response(fenced.replace(b"503 Service Unavailable", b"200 OK"))
    assert odd is not None and odd.fence is None


def test_http_1_0_answers_end_their_connection() -> None:
    head = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert head is not None and not head.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ],
)
def test_unusual_answers_are_refused(raw: bytes) -> None:
    with pytest.raises(Unusual):
        parse_response(raw)


def test_an_answer_without_length_has_no_known_end() -> None:
    head = parse_response(b"HTTP/1.1 200 OK\r\n\r\n")
    assert head is not None
    with pytest.raises(Unusual):
        head.body_length("GET")
    assert head.body_length("HEAD") == 0


def test_relayed_heads_become_aiohttp_headers_and_answers_get_a_length() -> None:
    assert dict(response_headers(CREATED[:-2])) == {
        "Content-Type": "application/json",
        "X-Openstack-Request-ID": "req-1",
    }
    raw = encode_response(404, "Not Found", [("A", "b"), ("Content-Length", "9")], b"{}")
    assert raw == b"HTTP/1.1 404 Not Found\r\na: b\r\ncontent-length: 2\r\n\r\n{}"
