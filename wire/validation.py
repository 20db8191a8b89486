"""Named validation steps, with the limits and the wording of Zaqar's `transport/validation.py`."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from wire.errors import ApiError, BadRequestBody, ValidationFailed
from wire.limits import ApiLimits

QUEUE_NAME = re.compile(r"^[a-zA-Z0-9_\-.]{1,64}$")
PROJECT_ID_MAX_LEN = 256
PURGEABLE = frozenset({"messages", "subscriptions"})
PATCH_OPS = ("add", "remove", "replace")


def utf8(text: str) -> bool:
    """Whether a header value came as UTF-8 (servers decode other bytes as lone surrogates,
    which neither storage nor hashing can encode again)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def queue_identification(queue: str, project: str | None) -> None:
    if (
        project is not None and (len(project) > PROJECT_ID_MAX_LEN or not utf8(project))
    ) or not QUEUE_NAME.match(queue):
        raise ApiError(
            "The format of the submitted queue name or project id is not valid.",
            title="Invalid queue identification",
        )


def document_type(document: Any, expected: type) -> None:
    if not isinstance(document, expected):
        raise BadRequestBody("Document type not supported.")


def field(document: dict[str, Any], name: str, kind: type | None, default: Any) -> Any:
    """`document[name]`, or `default`; `default=None` makes it required. `kind=None`: any type."""
    if name in document:
        value = document[name]
    elif default is not None:
        return default
    else:
        raise BadRequestBody(f'Missing "{name}" field.')
    if kind is None or isinstance(value, kind):
        return value
    raise BadRequestBody(f'The value of the "{name}" field must be a {kind.__name__}.')


def message_length(length: int | None, limits: ApiLimits, queue_max: Any = None) -> None:
    if length is None:
        return
    if isinstance(queue_max, int) and queue_max:
        allowed = min(queue_max, limits.max_messages_post_size)
        if length > allowed:
            raise ValidationFailed(
                f"Message collection size is too large. The max size for current queue is "
                f"{allowed}. It is calculated by max size = min(max_messages_post_size_config: "
                f"{limits.max_messages_post_size}, max_messages_post_size_queue: {queue_max})."
            )
    if length > limits.max_messages_post_size:
        raise ValidationFailed(
            f"Message collection size is too large. Max size {limits.max_messages_post_size}"
        )


def message_ttl(ttl: int, limits: ApiLimits) -> None:
    if not limits.min_message_ttl <= ttl <= limits.max_message_ttl:
        raise ValidationFailed(
            f"The TTL for a message may not exceed {limits.max_message_ttl} seconds, and must "
            f"be at least {limits.min_message_ttl} seconds long."
        )


def queue_listing(limit: int | None, limits: ApiLimits) -> None:
    if limit is not None and not 0 < limit <= limits.max_queues_per_page:
        raise ValidationFailed(
            f"Limit must be at least 1 and no greater than {limits.max_queues_per_page}."
        )


MAX_MARKER = 2**63 - 1  # markers are signed 64-bit counters in every store


def message_marker(marker: int) -> None:
    if marker > MAX_MARKER:
        raise ValidationFailed(
            f'The "marker" parameter is invalid. It may not be greater than {MAX_MARKER}.'
        )


def message_listing(limit: int | None, limits: ApiLimits) -> None:
    if limit is not None and not 0 < limit <= limits.max_messages_per_page:
        raise ValidationFailed(
            f"Limit must be at least 1 and may not be greater than {limits.max_messages_per_page}."
        )


def message_deletion(ids: Sequence[str] | None, pop: int | None, limits: ApiLimits) -> None:
    if pop is not None and ids is not None:
        raise ValidationFailed(
            "pop and id params cannot be present together in the delete request."
        )
    if pop is None and ids is None:
        raise ValidationFailed(
            'The request should have either "ids" or "pop" parameter in the request, '
            "to be able to delete."
        )
    if pop is not None and not 0 < pop <= limits.max_messages_per_claim_or_pop:
        raise ValidationFailed(
            "Pop value must be at least 1 and may not be greater than "
            f"{limits.max_messages_per_claim_or_pop}."
        )
    if ids is not None and not 0 < len(ids) <= limits.max_messages_per_page:
        raise ValidationFailed(
            "ids parameter should have at least 1 and not greater than "
            f"{limits.max_messages_per_page} values."
        )


def claim_ttl(ttl: int, limits: ApiLimits) -> None:
    if not limits.min_claim_ttl <= ttl <= limits.max_claim_ttl:
        raise ValidationFailed(
            f"The TTL for a claim may not exceed {limits.max_claim_ttl} seconds, and must be at "
            f"least {limits.min_claim_ttl} seconds long."
        )


def claim_updating(ttl: int, grace: int, limits: ApiLimits) -> None:
    """A claim's new TTL, and the grace its messages get (0 when the body leaves it out)."""
    claim_ttl(ttl, limits)
    if not 0 <= grace <= limits.max_claim_grace:
        raise ValidationFailed(
            f"The grace for a claim may not exceed {limits.max_claim_grace} seconds, and must "
            "not be negative."
        )


def claim_creation(ttl: int, grace: int, limit: int | None, limits: ApiLimits) -> None:
    claim_ttl(ttl, limits)
    if limit is not None and not 0 < limit <= limits.max_messages_per_claim_or_pop:
        raise ValidationFailed(
            "Limit must be at least 1 and may not be greater than "
            f"{limits.max_messages_per_claim_or_pop}."
        )
    if not limits.min_claim_grace <= grace <= limits.max_claim_grace:
        raise ValidationFailed(
            f"The grace for a claim may not exceed {limits.max_claim_grace} seconds, and must "
            f"be at least {limits.min_claim_grace} seconds long."
        )


def claim_metadata(document: Any, limits: ApiLimits) -> tuple[int, int]:
    """(ttl, grace) from a claim body; either may be left out for its default."""
    document_type(document, dict)
    ttl = field(document, "ttl", int, limits.default_claim_ttl)
    grace = field(document, "grace", int, limits.default_claim_grace)
    return ttl, grace


def queue_metadata_length(length: int | None, limits: ApiLimits) -> None:
    if length is not None and length > limits.max_queue_metadata:
        raise ValidationFailed(
            f"Queue metadata is too large. Max size: {limits.max_queue_metadata}"
        )


def queue_metadata_putting(metadata: dict[str, Any] | None, limits: ApiLimits) -> None:
    """The reserved `_`-attributes that Zaqar checks on PUT."""
    if not metadata:
        return
    ttl = metadata.get("_default_message_ttl")
    if ttl and not isinstance(ttl, int):
        raise ValidationFailed("_default_message_ttl must be integer.")
    if ttl and not limits.min_message_ttl <= ttl <= limits.max_message_ttl:
        raise ValidationFailed(
            f"_default_message_ttl can not exceed {limits.max_message_ttl} seconds, and must be "
            f"at least {limits.min_message_ttl} seconds long."
        )
    size = metadata.get("_max_messages_post_size")
    if size and not isinstance(size, int):
        raise ValidationFailed("_max_messages_post_size must be integer.")
    if size and not 0 < size <= limits.max_messages_post_size:
        raise ValidationFailed(
            f"_max_messages_post_size can not exceed {limits.max_messages_post_size},  and must "
            "be at least greater than 0."
        )
    delay = metadata.get("_default_message_delay")
    if delay and not isinstance(delay, int):
        raise ValidationFailed("_default_message_delay must be integer.")
    if delay and not 0 <= delay <= limits.max_message_delay:
        raise ValidationFailed(
            f"The TTL can not exceed {limits.max_message_delay} seconds, and must be at least "
            "0 seconds long."
        )


def queue_purging(document: Any) -> list[str]:
    document_type(document, dict)
    if "resource_types" not in document:
        raise ValidationFailed('Post body must contain key "resource_types".')
    types = document["resource_types"]
    if not isinstance(types, list) or not all(isinstance(t, str) and t in PURGEABLE for t in types):
        raise ValidationFailed(f"Resource types must be a sub set of {sorted(PURGEABLE)}.")
    return types


def _json_pointer(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValidationFailed(f'Pointer `{pointer}` does not start with "/".')
    if re.search(r"/\s*?/", pointer[1:]):
        raise ValidationFailed(f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise ValidationFailed(f'Pointer `{pointer}` end with "/".')
    if re.search("~[^01]", pointer) or pointer.endswith("~"):
        raise ValidationFailed(
            f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
        )
    return [p.replace("~1", "/").replace("~0", "~").strip() for p in pointer.lstrip("/").split("/")]


def queue_patching(changes: Any) -> list[tuple[str, str, Any]]:
    """JSON-patch operations on `/metadata/<key>`, as (op, key, value) triples."""
    if not isinstance(changes, list):
        raise ValidationFailed("Request body must be a JSON array of operation objects.")
    washed: list[tuple[str, str, Any]] = []
    for change in changes:
        if not isinstance(change, dict):
            raise ValidationFailed("Operations must be JSON objects.")
        op = change.get("op")
        if op is None:
            raise ValidationFailed(
                "Unable to find `op` in JSON Schema change. It must be one of the following: "
                f"{', '.join(PATCH_OPS)}."
            )
        if op not in PATCH_OPS:
            raise ValidationFailed(
                f"Invalid operation: `{op}`. It must be one of the following: "
                f"{', '.join(PATCH_OPS)}."
            )
        if "path" not in change or not isinstance(change["path"], str):
            raise ValidationFailed("Unable to find 'path' in JSON Schema change")
        path = _json_pointer(change["path"])
        if len(path) != 2:
            raise ValidationFailed(
                f"Invalid JSON pointer for this resource: '/{'/'.join(path)}, e.g /metadata/key'"
            )
        value = None
        if op != "remove":
            if "value" not in change:
                raise ValidationFailed(f'Operation "{op}" requires a member named "value".')
            value = change["value"]
            if path[0].lower() != "metadata":
                raise ValidationFailed("The root of path must be metadata, e.g /metadata/key.")
        washed.append((op, path[1], value))
    return washed


# --- subscriptions -------------------------------------------------------------------------------

RETRY_POLICY_INTS = (
    "retries_with_no_delay",
    "minimum_delay_retries",
    "minimum_delay",
    "maximum_delay",
    "maximum_delay_retries",
)
# The latest expiry Zaqar can represent (Python's `datetime.max`), in UNIX seconds.
LATEST_EXPIRY = (datetime.datetime.max - datetime.datetime(1970, 1, 1)).total_seconds()


def retry_policy(options: Any) -> None:
    """The shape of `options["_retry_policy"]` (a subscription's, or a queue's metadata)."""
    policy = options.get("_retry_policy") if isinstance(options, dict) else None
    if policy and not isinstance(policy, dict):
        raise ValidationFailed("retry_policy must be a dict.")
    if not policy:
        return
    for key in RETRY_POLICY_INTS:
        value = policy.get(key)
        if value and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValidationFailed(f"Retry policy: {key} must be a integer.")
    backoff = policy.get("retry_backoff_function")
    if backoff and not isinstance(backoff, str):
        raise ValidationFailed("retry_backoff_function must be a string.")
    if backoff and backoff != "linear":
        raise ValidationFailed("retry_backoff_function only supports linear now.")
    ignore = policy.get("ignore_subscription_override")
    if ignore and not isinstance(ignore, bool):
        raise ValidationFailed("ignore_subscription_override must be a boolean.")


def subscription_posting(document: Any, limits: ApiLimits, now: float) -> None:
    """A new subscription: a subscriber is required, the rest as `subscription_patching`."""
    if not isinstance(document, dict):
        raise ValidationFailed("Subscriptions must be a dict.")
    if "subscriber" not in document:
        raise ValidationFailed("Missing parameter subscriber in body.")
    subscription_patching(document, limits, now)


def subscription_patching(document: Any, limits: ApiLimits, now: float) -> None:
    """The fields of a subscription being created or updated."""
    if not document:
        raise ValidationFailed("No subscription to create.")
    if not isinstance(document, dict):
        raise ValidationFailed("Subscriptions must be a dict.")
    subscriber = document.get("subscriber")
    if subscriber is not None:  # Zaqar lets "" through, to fail later with a 503
        schemes = limits.subscriber_schemes
        if not isinstance(subscriber, str) or urlsplit(subscriber).scheme not in schemes:
            raise ValidationFailed(
                f"The subscriber type of subscription must be supported in the list {schemes}."
            )
    options = document.get("options")
    if options and not isinstance(options, dict):
        raise ValidationFailed("Options must be a dict.")
    retry_policy(options)
    ttl = document.get("ttl")
    if ttl:
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise ValidationFailed("TTL must be an integer.")
        if ttl < limits.min_subscription_ttl:
            raise ValidationFailed(
                f"The TTL for a subscription must be at least {limits.min_subscription_ttl} "
                "seconds long."
            )
        if now + ttl >= LATEST_EXPIRY:
            raise ValidationFailed(
                "The TTL seconds for a subscription plus current time must be less than "
                f"{datetime.datetime.max}."
            )


def subscription_confirming(document: Any) -> bool:
    confirmed = document.get("confirmed") if isinstance(document, dict) else None
    if not isinstance(confirmed, bool):
        raise ValidationFailed("The 'confirmed' should be boolean.")
    return confirmed


def subscription_listing(limit: int | None, limits: ApiLimits) -> None:
    if limit is not None and not 0 < limit <= limits.max_subscriptions_per_page:
        raise ValidationFailed(
            "Limit must be at least 1 and may not be greater than "
            f"{limits.max_subscriptions_per_page}."
        )
