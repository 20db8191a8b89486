"""HTTP/1.1 messages as the proxy's lean path reads and writes them: heads scanned with minimal
work, header lines and bodies passed on as bytes.

Only the common shape is handled: `HTTP/1.1`, a `Content-Length` body (or none), plain header
lines. Anything else raises `Unusual`, and the caller leaves the message to aiohttp (requests)
or gives up the connection (a node's answer), so rarities keep aiohttp's well-tested handling.
Heads are read with a few C-level searches instead of a loop over lines; a head that holds a
rarer hop-by-hop header takes the loop.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from multidict import CIMultiDict

from wire.limits import MAX_BODY

MAX_HEAD = 32 * 1024  # request line and headers; aiohttp allows 8190 bytes per line
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")}
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the ones
# each hop sets itself for its own connection and body.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
# Hop-by-hop headers other than Host and Content-Length, in a lowered head.
_RARE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-[^:\r]*|te|trailer|upgrade|transfer-encoding|expect):"
)
_ANSWER_HOP_BY_HOP = re.compile(rb"\r\n(?:connection|transfer-encoding):")
_HOST = b"\r\nhost:"
_LENGTH = b"\r\ncontent-length:"
_PROJECT = b"\r\nx-project-id:"
_REQUEST_ID = b"\r\nx-openstack-request-id:"
_FENCE = b"\r\nx-marconi-fence:"
_NO_BODY = frozenset({204, 304})
# What aiohttp's parser (the node's, and the proxy's own for what it is handed) refuses, the
# lean path leaves to it: so every malformed head gets aiohttp's 400, and its connection closes.
MAX_LINE = 8190  # bytes in one line: aiohttp's limit on a request target and on a field
MAX_HEADERS = 100  # aiohttp refuses more than 128; fewer still is plenty for the API
# Control characters (tab aside) stay: a head holds none but its CRLFs.
_NOT_CONTROLS = bytes(b for b in range(256) if not (b < 0x20 and b != 0x09) and b != 0x7F)
# The header lines, each a token, a colon and a value, not too many: in one C-level match. Line
# lengths are checked only in heads long enough to hold a line too long (one more pass).
_HEADER_LINE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*\r\n"
_HEADER_LINES = rb"(?:%s){0,%d}" % (_HEADER_LINE, MAX_HEADERS)
# The request line the lean path takes (one of its methods, a path, HTTP/1.1; a target holds
# no space nor control character), then the header lines.
_REQUEST_HEAD = re.compile(
    rb"(%s) (/[^\x00-\x20\x7f]*) HTTP/1\.1\r\n%s" % (b"|".join(_METHODS), _HEADER_LINES)
)
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE + 1))


class Unusual(Exception):
    """A message outside the lean path's common shape (or malformed)."""


class RequestHead(NamedTuple):
    """A client's request head (a tuple: the cheapest record to make, once per request)."""

    method: str
    target: str  # raw path and query, as received
    # The usual head goes on as it came (`verbatim`): the request line and every header line
    # but Host, which names the next hop (Content-Length stays: the body goes on unchanged).
    # Otherwise `lines` holds the end-to-end header lines only, and the hop sets its own Host
    # and Content-Length.
    lines: bytes  # each ending in CRLF
    verbatim: bool
    project: str | None  # X-Project-ID, as aiohttp decodes header values
    request_id: str | None  # X-Openstack-Request-ID
    length: int  # of the body (Content-Length; 0 without it)
    size: int  # bytes of the head, blank line included


def parse_request(buffer: bytes | bytearray) -> RequestHead | None:
    """The head at the start of `buffer`, or None while it is incomplete. Raises `Unusual`."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD:
        if end > MAX_HEAD or len(buffer) > MAX_HEAD:
            raise Unusual("head too large")
        return None
    head = bytes(buffer[: end + 2])  # every line ends in CRLF
    # No control character but CRLFs (no bare CR or LF, no NUL: nothing smuggled past the
    # node's parser); header lines of a name, a colon and a value (no folded line, no blank
    # before a colon); no line too long, not too many: C-level passes over the head.
    controls = head.translate(None, _NOT_CONTROLS)
    if controls != b"\r\n" * (len(controls) >> 1):
        raise Unusual("malformed head")
    matched = _REQUEST_HEAD.fullmatch(head)
    if matched is None or (end > MAX_LINE and _LONG_LINE.search(head) is not None):
        raise Unusual("malformed head")  # or a request line the lean path leaves to aiohttp
    raw_method, raw_target = matched.group(1, 2)
    method = _METHODS[raw_method]
    first = matched.end(2) + 9  # the request line's CRLF, after " HTTP/1.1"
    lower = head.lower()
    host = lower.find(_HOST, first)
    if host >= 0 and lower.find(_HOST, host + 2) >= 0:
        raise Unusual("Host repeated")
    verbatim = _RARE.search(lower, first) is None
    if verbatim:
        # The next hop sets its own Host.
        lines = head if host < 0 else head[:host] + head[head.find(b"\r\n", host + 2) :]
        length = 0
        at = lower.find(_LENGTH, first)
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            value = head[at + len(_LENGTH) : line_end].strip(b" \t")
            if not value.isdigit() or lower.find(_LENGTH, line_end) >= 0:
                raise Unusual("Content-Length")
            length = int(value)
    else:
        length, lines = _read_lines(head, first)
    if length > MAX_BODY:
        raise Unusual("body too large")  # aiohttp answers it in Zaqar's words
    return RequestHead(
        method,
        raw_target.decode("latin-1"),
        lines,
        verbatim,
        _value(head, lower, _PROJECT),
        _value(head, lower, _REQUEST_ID),
        length,
        end + 4,
    )


def _read_lines(head: bytes, first: int) -> tuple[int, bytes]:
    """A head with rarer hop-by-hop headers: line by line."""
    length = -1
    kept = []
    for line in head[first + 2 : -2].split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower().decode("latin-1")
        if name not in HOP_BY_HOP:
            kept.append(line + b"\r\n")
        elif name == "content-length":
            value = line.partition(b":")[2].strip(b" \t")
            if length >= 0 or not value.isdigit():
                raise Unusual("Content-Length")
            length = int(value)
        elif name in ("transfer-encoding", "expect", "upgrade"):
            raise Unusual(name)  # chunked bodies, 100-continue, upgrades
        elif name == "connection" and line.partition(b":")[2].strip().lower() != b"keep-alive":
            raise Unusual(name)  # Connection: close, or naming other headers
    return max(length, 0), b"".join(kept)


def _value(head: bytes, lower: bytes, name: bytes) -> str | None:
    """The first value of a header (`name` lowered, between CRLF and colon), or None."""
    at = lower.find(name)
    if at < 0:
        return None
    line_end = head.find(b"\r\n", at + 2)
    return head[at + len(name) : line_end].strip(b" \t").decode("utf-8", "surrogateescape")


def header_lines(headers: CIMultiDict[str]) -> bytes:
    return "".join([f"{k}: {v}\r\n" for k, v in headers.items()]).encode("utf-8", "surrogateescape")


def parse_lines(lines: bytes) -> CIMultiDict[str]:
    """The end-to-end headers among header lines (each ending in CRLF), as aiohttp decodes
    them."""
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines.split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        key = name.decode("utf-8", "surrogateescape")
        if key.lower() not in HOP_BY_HOP:
            headers.add(key, value.strip(b" \t").decode("utf-8", "surrogateescape"))
    return headers


class ResponseHead(NamedTuple):
    """A node's answer head, ready to relay."""

    status: int
    head: bytes  # status line and end-to-end headers, blank line included
    size: int  # bytes it took in the stream
    length: int  # Content-Length; -1 without it
    keep_alive: bool
    fence: str | None  # X-Marconi-Fence on a 503
    request_id: bool  # whether it carries X-Openstack-Request-ID

    def body_length(self, request_method: str) -> int:
        """Bytes of body that follow. Raises `Unusual` when the length is unknown."""
        if request_method == "HEAD" or self.status in _NO_BODY:
            return 0
        if self.length < 0:
            raise Unusual("answer without Content-Length")
        return self.length


def parse_response(buffer: bytes | bytearray) -> ResponseHead | None:
    """The answer head at the start of `buffer`, or None while incomplete. Raises `Unusual`."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise Unusual("answer head too large")
        return None
    raw = bytes(buffer[: end + 4])
    code = raw[9:12]
    if raw[:7] != b"HTTP/1." or not code.isdigit() or code[0] < 0x32:
        raise Unusual("status line")  # 1xx answers never come: the proxy sends no Expect
    status = int(code)
    keep_alive = raw[7] == 0x31  # HTTP/1.1; a 1.0 answer ends its connection
    lower = raw.lower()
    length = -1
    at = lower.find(_LENGTH)
    if at >= 0:
        line_end = raw.find(b"\r\n", at + 2)
        value = raw[at + 17 : line_end].strip(b" \t")  # 17: len(_LENGTH)
        if not value.isdigit() or lower.find(_LENGTH, line_end) >= 0:
            raise Unusual("Content-Length")
        length = int(value)
    # Nodes send no hop-by-hop headers but these (aiohttp's Connection: close at shutdown).
    if _ANSWER_HOP_BY_HOP.search(lower) is not None:
        raw, keep_alive = _relayed(raw, keep_alive)
        lower = raw.lower()
    fence = _value(raw, lower, _FENCE) if status == 503 else None
    has_request_id = lower.find(_REQUEST_ID) >= 0
    return ResponseHead(status, raw, end + 4, length, keep_alive, fence, has_request_id)


def _relayed(raw: bytes, keep_alive: bool) -> tuple[bytes, bool]:
    """An answer head without its hop-by-hop headers (Content-Length stays with its body)."""
    lines = raw[:-4].split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lower = name.strip().lower().decode("latin-1")
        if lower == "transfer-encoding":
            raise Unusual("Transfer-Encoding")  # nodes answer with a length
        if lower == "connection":
            keep_alive = keep_alive and b"close" not in value.lower()
        if lower == "content-length" or lower not in HOP_BY_HOP:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n", keep_alive


def response_headers(head: bytes) -> CIMultiDict[str]:
    """The headers of a relayed head, for aiohttp's responses (it sets Content-Length itself)."""
    return parse_lines(head[head.find(b"\r\n") + 2 : -2])


def encode_response(status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """An answer the proxy makes itself (errors), with its length; header names in lower case,
    as Zaqar's server writes them."""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    lines.extend(f"{k.lower()}: {v}\r\n" for k, v in headers if k.lower() != "content-length")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape") + body
