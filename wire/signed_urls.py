"""Pre-signed URLs as Zaqar 23 makes and checks them (zaqar/common/urls.py, the share route and
its `verify_pre_signed_url` hook): written once, for the node and the proxy.

A share (`POST /v2/queues/{q}/share`) signs a queue's paths, methods, project and expiry with the
operator's secret (Zaqar's `[signed_url] secret_key`). A request that brings the signature back
in `URL-Signature`, with `URL-Expires`, `URL-Methods`, `URL-Paths` and `X-Project-ID`, is let in
for exactly those: any other method, path, project or expiry, an expired or tampered signature,
or no secret configured, and it is refused as Zaqar refuses it (404).

The signed text is Zaqar's, byte for byte (its backslashes are literal, not newlines), so
signatures made by a Zaqar server with the same secret verify here and the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from wire.errors import ResourceNotFound, ValidationFailed

SIGNATURE = "URL-Signature"
EXPIRES = "URL-Expires"
METHODS = "URL-Methods"
PATHS = "URL-Paths"
PROJECT = "X-Project-ID"

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
DEFAULT_LIFETIME = timedelta(days=1)
SHARE_KEYS = frozenset({"methods", "expires", "paths"})
SHARE_PATHS = frozenset({"messages", "subscriptions", "claims"})


def utcnow() -> datetime:
    """Now, as a naive UTC time (Zaqar compares naive UTC times)."""
    return datetime.now(UTC).replace(tzinfo=None)


class SigningError(ValueError):
    """What Zaqar's `create_signed_url` refuses (its ValueError), worded as Zaqar words it."""


class SignatureRefused(ResourceNotFound):
    """A request whose signature does not let it in: 404, as Zaqar answers."""

    def __init__(self) -> None:
        super().__init__("The requested resource does not exist.")


def _expiry(expires: Any, now: datetime) -> datetime:
    """`expires` as a naive UTC time: Zaqar's checks and `parse_isotime`'s errors."""
    if expires is None:
        return now + DEFAULT_LIFETIME
    try:
        whole = int(expires)
    except (TypeError, ValueError, OverflowError):
        whole = 0
    if whole:
        raise SigningError(
            "`expires` should be date format, for example 2016-01-01T00:00:00, "
            f"not integer value: {whole}"
        )
    if not isinstance(expires, str):
        raise SigningError(f"Unable to parse date string {expires!r}")
    try:
        parsed = datetime.fromisoformat(expires)
    except ValueError:
        raise SigningError(f"Unable to parse date string {expires!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _strings(values: Any, name: str) -> list[str]:
    if not isinstance(values, list):
        raise SigningError(f"`{name}` should be a list")
    if not all(isinstance(v, str) for v in values):
        raise SigningError(f"`{name}` should be a list of strings")
    return sorted(values)


def sign(
    key: str | None,
    paths: Any,
    project: str | None = None,
    expires: Any = None,
    methods: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Zaqar's `create_signed_url`: the signed document (`paths`, `methods`, `project`,
    `expires`, `signature`). Raises `SigningError` with Zaqar's words for what it refuses."""
    methods = methods or ["GET"]
    if key is None:
        raise SigningError("The `key` can't be None")
    if not isinstance(paths, list) or not paths:
        raise SigningError("`paths` must be a non-empty list")
    if not isinstance(methods, list):
        raise SigningError("`methods` should be a list")
    now = now or utcnow()
    expiry = _expiry(expires, now)
    if expiry <= now:
        raise SigningError("`expires` is lower than the current time")
    sorted_methods = _strings(methods, "methods")
    sorted_paths = _strings(paths, "paths")
    expires_text = expiry.strftime(DATE_FORMAT)
    # Zaqar's text: a raw string, so the separators are a backslash and an `n`.
    text = "\\n".join(
        (",".join(sorted_paths), ",".join(sorted_methods), str(project), expires_text)
    )
    # Header values that are not UTF-8 reach here as surrogates (as aiohttp decodes them).
    raw = text.encode("utf-8", "surrogateescape")
    signature = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return {
        "paths": sorted_paths,
        "methods": sorted_methods,
        "project": project,
        "expires": expires_text,
        "signature": signature,
    }


def share(
    key: str | None, queue_path: str, project: str, document: Any, now: datetime | None = None
) -> dict[str, Any]:
    """The share route's answer for the queue at `queue_path` (`/v2/queues/{q}`): Zaqar's
    checks of the body, its default path (`messages`), then `sign`. Raises `ValidationFailed`."""
    if not isinstance(document, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    unknown = set(document) - SHARE_KEYS
    if unknown:
        raise ValidationFailed(f"Unknown keys: {_set_text(unknown)}")
    paths = document.get("paths")
    if not paths:
        names = ["messages"]
    else:
        if not isinstance(paths, list | str | dict):
            raise ValidationFailed(f"Invalid paths: {paths!r}")
        invalid = [p for p in paths if not (isinstance(p, str) and p in SHARE_PATHS)]
        if invalid:
            raise ValidationFailed(f"Invalid paths: {_set_text(invalid)}")
        names = list(paths)
    full = [f"{queue_path}/{name}" for name in names]
    try:
        return sign(key, full, project, document.get("expires"), document.get("methods"), now=now)
    except SigningError as exc:
        raise ValidationFailed(str(exc)) from None


def _set_text(items: Iterable[Any]) -> str:
    """Items as Python prints a set of them (Zaqar's messages do), in a stable order."""
    return "{" + ", ".join(sorted({repr(i) for i in items})) + "}"


def is_signed(headers: Mapping[str, str]) -> bool:
    """Whether a request brings a signature (an empty one counts as none, as in Zaqar)."""
    return bool(headers.get(SIGNATURE))


def covers(signed_path: str, path: str) -> bool:
    """Whether a signed path lets `path` in: itself, or a resource under it (one message, one
    claim). Zaqar reads the signed path as a pattern found anywhere in the request's path; a
    prefix is what its share route means and lets nothing else in."""
    return bool(signed_path) and (path == signed_path or path.startswith(signed_path + "/"))


def check(
    key: str | None,
    method: str,
    path: str,
    headers: Mapping[str, str],
    now: datetime | None = None,
) -> None:
    """Zaqar's `verify_pre_signed_url` for a request that brings `URL-Signature`: returns when
    its method, path (no query), project and expiry are the signed ones and the signature
    matches; raises `SignatureRefused` otherwise, and also when no secret is configured."""
    signature = headers.get(SIGNATURE, "")
    methods = headers.get(METHODS, "").split(",")
    paths = headers.get(PATHS, "").split(",")
    if method not in methods or not any(covers(p, path) for p in paths):
        raise SignatureRefused()
    try:
        expected = sign(
            key,
            paths,
            headers.get(PROJECT),
            headers.get(EXPIRES),
            methods,
            now=now,
        )
    except SigningError:
        raise SignatureRefused() from None
    given = signature.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected["signature"].encode()):
        raise SignatureRefused()
