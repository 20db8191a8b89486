"""Subscription handlers (v2 only), shaped as Zaqar 23's `v2_0/subscriptions.py` answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api.endpoint import Endpoint, scope
from node.models import Subscription
from node.notify.confirm import confirmation_delivery, needs_confirmation
from node.notify.trust import check_subscription
from wire import validation
from wire.answers import no_content, ok, query_string
from wire.errors import ApiError, error_response
from wire.request import optional_json_body, param_int, param_str
from wire.topics import is_topic, topic_name

DEFAULT_SUBSCRIPTIONS_PER_PAGE = 10
ALREADY_EXISTS = (
    "Such subscription already exists.Subscriptions are unique by project + queue + subscriber URI."
)


def subscription_body(s: Subscription, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "source": topic_name(s.source) if is_topic(s.source) else s.source,
        "subscriber": s.subscriber,
        "ttl": s.ttl,
        "age": s.age(now),
        "options": s.options,
        "confirmed": s.confirmed,
    }


class SubscriptionEndpoint(Endpoint):
    async def document(self, request: web.Request) -> Any:
        """The body as Zaqar reads it: `{}` when there is none."""
        if not request.content_length:
            return {}
        document = await optional_json_body(request, self.limits.max_json_depth)
        return {} if document is None else document


class SubscriptionCollection(SubscriptionEndpoint):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        marker = param_str(request, "marker")
        limit = param_int(request, "limit")
        validation.subscription_listing(limit, self.limits)
        found = await self.storage.subscriptions.list(
            project, queue, marker=marker, limit=limit or DEFAULT_SUBSCRIPTIONS_PER_PAGE
        )
        now = self.deps.clock()
        links = []
        if found:
            # Zaqar's next link: the parameters given, in order, with the marker moved on.
            params: dict[str, Any] = {}
            if marker is not None:
                params["marker"] = marker
            if limit is not None:
                params["limit"] = limit
            params["marker"] = found[-1].id
            links.append({"rel": "next", "href": request.path + query_string(params)})
        return ok({"subscriptions": [subscription_body(s, now) for s in found], "links": links})

    async def post(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        document = await self.document(request)
        validation.subscription_posting(document, self.limits, self.deps.clock())
        subscriber: str = document["subscriber"]
        ttl = document.get("ttl")
        ttl = self.limits.default_subscription_ttl if ttl is None else int(ttl)
        options = document.get("options") or {}
        check_subscription(subscriber, options)
        if not await self.storage.queues.exists(project, queue):
            await self.storage.queues.create(project, queue, None)  # subscribing creates it
        created = await self.storage.subscriptions.create(project, queue, subscriber, ttl, options)
        headers = {"Location": request.path}
        if created is not None:
            await self.request_confirmation(project, queue, created)
            return ok({"subscription_id": created}, status=201, headers=headers)
        existing = await self.storage.subscriptions.find(project, queue, subscriber)
        if existing is None or existing.confirmed:
            return error_response(409, "Resource conflict", ALREADY_EXISTS, headers)
        # Zaqar answers a repeated subscription that is not confirmed yet as a new one (and
        # sends its confirmation request again).
        await self.request_confirmation(project, queue, existing.id)
        return ok({"subscription_id": existing.id}, status=201, headers=headers)

    async def request_confirmation(self, project: str, queue: str, subscription_id: str) -> None:
        """Zaqar's confirmation request, through the outbox, when confirmation is required."""
        signer = self.deps.confirmations
        if signer is None:
            return
        subscription = await self.storage.subscriptions.get(project, queue, subscription_id)
        if needs_confirmation(subscription.subscriber):
            now = self.deps.clock()
            delivery = confirmation_delivery(project, queue, subscription, signer, now)
            await self.storage.outbox.enqueue([delivery])


class SubscriptionItem(SubscriptionEndpoint):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        found = await self.storage.subscriptions.get(
            project, queue, request.match_info["subscription_id"]
        )
        return ok(subscription_body(found, self.deps.clock()))

    async def patch(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        subscription_id = request.match_info["subscription_id"]
        document = await self.document(request)
        validation.subscription_patching(document, self.limits, self.deps.clock())
        changes = {
            name: document[name]
            for name in ("subscriber", "ttl", "options")
            if document.get(name) is not None
        }
        if "options" in changes:
            changes["options"] = changes["options"] or {}  # [] or "" as Zaqar's empty options
        if not changes:
            raise ApiError(
                f"Subscription {subscription_id} could not be updated.",
                title="Unable to update subscription",
            )
        await self.storage.subscriptions.update(project, queue, subscription_id, **changes)
        return no_content({"Location": request.path})

    async def delete(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        await self.storage.subscriptions.delete(
            project, queue, request.match_info["subscription_id"]
        )
        return no_content()


class SubscriptionConfirm(SubscriptionEndpoint):
    async def put(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        confirmed = validation.subscription_confirming(await self.document(request))
        await self.storage.subscriptions.confirm(
            project, queue, request.match_info["subscription_id"], confirmed
        )
        return no_content({"Location": request.path})
