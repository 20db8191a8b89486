"""Pre-signed URLs (wire/signed_urls.py) against Zaqar's rules: the signed text byte for byte,
the share route's defaults and refusals in Zaqar's words, and which requests a signature lets in."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

import pytest

from wire import signed_urls
from wire.errors import ValidationFailed
from wire.signed_urls import SignatureRefused, SigningError, check, covers, share, sign

KEY = "s3cr3t"
NOW = datetime(2026, 1, 1, 12, 0, 0)
Q = "/v2/queues/shared"


def zaqar_signature(key: str, paths: list[str], methods: list[str], project: str, exp: str) -> str:
    """Zaqar's HMAC, spelt out: sorted paths and methods joined by commas, the four parts joined
    by a literal backslash and `n` (a raw string in Zaqar), SHA-256 keyed by the secret."""
    text = "\\n".join([",".join(sorted(paths)), ",".join(sorted(methods)), project, exp])
    assert "\n" not in text
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_the_signature_is_zaqars() -> None:
    made = sign(
        KEY, [Q + "/messages", Q + "/claims"], "p1", "2026-01-02T00:00:00", ["POST", "GET"], now=NOW
    )
    assert made == {
        "paths": [Q + "/claims", Q + "/messages"],
        "methods": ["GET", "POST"],
        "project": "p1",
        "expires": "2026-01-02T00:00:00",
        "signature": zaqar_signature(
            KEY, [Q + "/messages", Q + "/claims"], ["POST", "GET"], "p1", "2026-01-02T00:00:00"
        ),
    }


def test_defaults_get_and_one_day() -> None:
    made = sign(KEY, [Q + "/messages"], "p1", now=NOW)
    assert made["methods"] == ["GET"]
    assert made["expires"] == "2026-01-02T12:00:00"
    assert sign(KEY, [Q + "/messages"], "p1", None, [], now=NOW)["methods"] == ["GET"]


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        ("2026-01-01T13:00:00Z", "2026-01-01T13:00:00"),
        ("2026-01-01T15:00:00+02:00", "2026-01-01T13:00:00"),  # normalized to UTC
        ("2026-01-01T13:00:00.123456", "2026-01-01T13:00:00"),  # python-zaqarclient's isoformat
        ("2026-01-02", "2026-01-02T00:00:00"),
    ],
)
def test_expiry_is_read_as_iso_8601_and_given_in_utc(expires: str, expected: str) -> None:
    assert sign(KEY, [Q], "p", expires, now=NOW)["expires"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, [Q], "p", None, None), "The `key` can't be None"),
        ((KEY, [], "p", None, None), "`paths` must be a non-empty list"),
        ((KEY, Q, "p", None, None), "`paths` must be a non-empty list"),
        ((KEY, [Q], "p", None, "GET"), "`methods` should be a list"),
        (
            (KEY, [Q], "p", 3600, None),
            "`expires` should be date format, for example "
            "2016-01-01T00:00:00, not integer value: 3600",
        ),
        (
            (KEY, [Q], "p", "86400", None),
            "`expires` should be date format, for example "
            "2016-01-01T00:00:00, not integer value: 86400",
        ),
        ((KEY, [Q], "p", "tomorrow", None), "Unable to parse date string 'tomorrow'"),
        ((KEY, [Q], "p", "2025-12-31T00:00:00", None), "`expires` is lower than the current time"),
        ((KEY, [Q], "p", "2026-01-01T12:00:00", None), "`expires` is lower than the current time"),
    ],
)
def test_what_signing_refuses_in_zaqars_words(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(SigningError) as caught:
        sign(*args, now=NOW)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_share_defaults_to_the_queues_messages() -> None:
    made = share(KEY, Q, "p1", {}, now=NOW)
    assert made["paths"] == [Q + "/messages"] and made["methods"] == ["GET"]
    assert list(made) == ["paths", "methods", "project", "expires", "signature"]
    made = share(KEY, Q, "p1", {"paths": ["claims", "subscriptions"]}, now=NOW)
    assert made["paths"] == [Q + "/claims", Q + "/subscriptions"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"paths": ["messages"], "ttl": 5}, "Unknown keys: {'ttl'}"),
        ({"b": 1, "a": 2}, "Unknown keys: {'a', 'b'}"),
        ({"paths": ["messages", "queues"]}, "Invalid paths: {'queues'}"),
        ({"paths": ["../x", "stats"]}, "Invalid paths: {'../x', 'stats'}"),
        ({"methods": "GET"}, "`methods` should be a list"),
        (
            {"expires": 60},
            "`expires` should be date format, for example 2016-01-01T00:00:00, "
            "not integer value: 60",
        ),
        ({}, None),
    ],
)
def test_share_refuses_in_zaqars_words(document: dict[str, object], message: str | None) -> None:
    if message is None:
        with pytest.raises(ValidationFailed, match="key"):
            share(None, Q, "p", document, now=NOW)  # no secret configured
        return
    with pytest.raises(ValidationFailed) as caught:
        share(KEY, Q, "p", document, now=NOW)
    assert caught.value.description == message and caught.value.status == 400


def headers_for(made: dict[str, object], project: str | None = None) -> dict[str, str]:
    headers = {
        signed_urls.SIGNATURE: str(made["signature"]),
        signed_urls.EXPIRES: str(made["expires"]),
        signed_urls.METHODS: ",".join(made["methods"]),  # type: ignore[arg-type]
        signed_urls.PATHS: ",".join(made["paths"]),  # type: ignore[arg-type]
    }
    headers[signed_urls.PROJECT] = project if project is not None else str(made["project"])
    return headers


def test_a_signature_lets_in_exactly_what_it_signed() -> None:
    made = share(
        KEY, Q, "p1", {"paths": ["messages", "claims"], "methods": ["GET", "POST"]}, now=NOW
    )
    headers = headers_for(made)
    for method, path in [
        ("GET", Q + "/messages"),
        ("POST", Q + "/messages"),
        ("GET", Q + "/messages/5f0c0e3f2a8b4c1d9e7f6a5b"),
        ("POST", Q + "/claims"),
        ("GET", Q + "/claims/5f0c0e3f2a8b4c1d9e7f6a5b"),
    ]:
        check(KEY, method, path, headers, now=NOW)
    refused = [
        ("DELETE", Q + "/messages"),  # a method not signed
        ("GET", Q),  # the queue itself
        ("GET", Q + "/stats"),
        ("GET", "/v2/queues/other/messages"),  # another queue
        ("GET", "/v2/queues/sharedx/messages"),  # a name that starts alike
        ("GET", Q + "/messagesx"),
        ("GET", "/admin" + Q + "/messages"),  # the signed path inside another
        ("GET", "/v1.1/queues/shared/messages"),  # another version
    ]
    for method, path in refused:
        with pytest.raises(SignatureRefused):
            check(KEY, method, path, headers, now=NOW)
    assert SignatureRefused().status == 404


def test_tampered_other_project_expired_or_no_secret_is_refused() -> None:
    made = share(KEY, Q, "p1", {"methods": ["GET"]}, now=NOW)
    path = Q + "/messages"
    check(KEY, "GET", path, headers_for(made), now=NOW)
    cases: list[tuple[str | None, dict[str, str], datetime]] = [
        (KEY, headers_for(made, project="p2"), NOW),  # another project
        (KEY, {**headers_for(made), signed_urls.PROJECT: ""}, NOW),
        ("other-secret", headers_for(made), NOW),  # signed with another secret
        (None, headers_for(made), NOW),  # no secret configured
        (KEY, {**headers_for(made), signed_urls.SIGNATURE: "0" * 64}, NOW),  # tampered
        (KEY, {**headers_for(made), signed_urls.METHODS: "GET,DELETE"}, NOW),  # widened
        (KEY, {**headers_for(made), signed_urls.PATHS: path + "," + Q + "/claims"}, NOW),
        (KEY, {**headers_for(made), signed_urls.EXPIRES: "2027-01-01T00:00:00"}, NOW),
        (KEY, {**headers_for(made), signed_urls.EXPIRES: "garbage"}, NOW),
        (KEY, headers_for(made), NOW + timedelta(days=1)),  # expired
    ]
    for key, headers, now in cases:
        with pytest.raises(SignatureRefused):
            check(key, "GET", path, headers, now=now)
    without = headers_for(made)
    del without[signed_urls.PROJECT]
    with pytest.raises(SignatureRefused):
        check(KEY, "GET", path, without, now=NOW)


def test_covers() -> None:
    assert covers(Q + "/messages", Q + "/messages")
    assert covers(Q + "/messages", Q + "/messages/abc")
    assert not covers(Q + "/messages", Q + "/messages2")
    assert not covers("", Q + "/messages")
    assert not covers(Q + "/messages/", Q + "/messages/abc")  # never made by a share


def test_header_values_that_are_not_utf8_are_refused_not_failed() -> None:
    made = share(KEY, Q, "p1", {}, now=NOW)
    odd = "p\udcff"  # a byte that is not UTF-8, as aiohttp and the lean path decode it
    for change in (
        {signed_urls.PROJECT: odd},
        {signed_urls.SIGNATURE: odd},
        {signed_urls.EXPIRES: odd},
        {signed_urls.PATHS: Q + "/messages," + odd},
    ):
        with pytest.raises(SignatureRefused):
            check(KEY, "GET", Q + "/messages", {**headers_for(made), **change}, now=NOW)
