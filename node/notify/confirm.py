"""The confirmation request Zaqar 23 sends a new webhook subscription when subscriptions must be
confirmed (`[notification] require_confirmation`, with a `[signed_url] secret_key`): a
notification carrying a pre-signed URL with which the subscriber confirms itself
(`PUT /v2/queues/{q}/subscriptions/{id}/confirm` with `{"confirmed": true}`), without a token.

The signature is made by the caller's `Signer` (Zaqar's `create_signed_url` over the confirm
path, the project and the method PUT), so that signing lives where signed URLs are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from node.models import Subscription
from node.storage.outbox import Delivery
from wire.signed_urls import sign

# (paths, project, methods) -> the signed document: paths, methods, project, expires, signature.
Signer = Callable[[list[str], str, list[str]], Mapping[str, Any]]
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"  # Zaqar's MessageType


def confirmation(
    queue: str, subscription_id: str, project: str, signer: Signer, version: str = "v2"
) -> dict[str, Any]:
    """The body Zaqar posts to the subscriber (its `queue_name` added as to any notice)."""
    path = f"/{version}/queues/{queue}/subscriptions/{subscription_id}/confirm"
    signed = signer([path], project, ["PUT"])
    return {
        "Message_Type": SUBSCRIPTION_CONFIRMATION,
        "Message": f"You have chosen to subscribe to the queue: {queue}",
        "URL-Signature": signed["signature"],
        "URL-Methods": signed["methods"][0],
        "URL-Paths": signed["paths"][0],
        "X-Project-ID": signed["project"],
        "URL-Expires": signed["expires"],
        "SubscribeBody": {"confirmed": True},
        "UnsubscribeBody": {"confirmed": False},
        "queue_name": queue,
    }


def needs_confirmation(subscriber: str) -> bool:
    """Zaqar sends the request to every kind of subscriber: webhooks get it as JSON, `mailto:`
    ones as an email with a link to the confirmation page (`node.notify.mailto`)."""
    return urlsplit(subscriber).scheme in ("http", "https", "trust+http", "trust+https", "mailto")


def confirmation_delivery(
    project: str, queue: str, subscription: Subscription, signer: Signer, now: float
) -> Delivery:
    """The request as a delivery of the outbox: sent whether the subscription is confirmed or
    not (it is how it gets confirmed), retried per its policy like any notification."""
    return Delivery(
        id=f"confirm:{subscription.id}:{now:.6f}",
        project=project,
        queue=queue,
        subscription_id=subscription.id,
        subscriber=subscription.subscriber,
        options=subscription.options,
        confirmed=True,
        notices=[confirmation(queue, subscription.id, project, signer)],
        posted=now,
        due=now,
    )


def confirmation_signer(key: str | None) -> Signer | None:
    """The `Signer` of confirmation requests with the cluster's signed-URL secret; None without
    one (Zaqar then sends no confirmation request: a subscriber is confirmed by a request with
    a token instead)."""
    if key is None:
        return None

    def signer(paths: list[str], project: str, methods: list[str]) -> Mapping[str, Any]:
        return sign(key, paths, project, None, methods)

    return signer
