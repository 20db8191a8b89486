"""Message handlers (v2 shapes; v1.1 and v1 subclass them)."""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from node.api import formatting as fmt
from node.api.endpoint import DEFAULT_MESSAGES_PER_PAGE, Endpoint, scope
from node.errors import MessageDoesNotExist, QueueDoesNotExist
from node.models import Message, NewMessage
from wire import answers, validation
from wire.answers import no_content, ok
from wire.checks import CLIENT_ID
from wire.errors import ValidationFailed
from wire.limits import ApiLimits
from wire.request import (
    json_body,
    param_bool,
    param_int,
    param_list,
    param_str,
    parse_json,
    read_at_most,
)

# Where a chunked post's body is kept once read: `Endpoint.shaped` may post it again.
CHUNKED_BODY = "marconi.chunked_body"


class MessageCollection(Endpoint):
    with_delay: ClassVar[bool] = True
    listing_flags: ClassVar[tuple[str, ...]] = ("echo", "include_claimed", "include_delayed")

    async def post(self, request: web.Request) -> web.Response:
        return await self.shaped(lambda: self.post_messages(request))

    async def post_messages(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        found = await self.queue_metadata(project, queue)
        metadata = found or {}
        queue_max = metadata.get("_max_messages_post_size")
        if request.content_length is None and request.body_exists:
            # Chunked: no length declared, so the body counts against the limit as it arrives.
            cap = self.limits.max_messages_post_size
            if CHUNKED_BODY not in request:
                request[CHUNKED_BODY] = await read_at_most(request, cap)
            raw = request[CHUNKED_BODY]
            validation.message_length(cap + 1 if raw is None else len(raw), self.limits, queue_max)
            document = parse_json(raw or b"", self.limits.max_json_depth)
        else:
            validation.message_length(request.content_length, self.limits, queue_max)
            document = await json_body(request, self.limits.max_json_depth)
        messages = messages_to_post(
            self.message_documents(document),
            self.limits,
            default_ttl=metadata.get("_default_message_ttl") or self.limits.default_message_ttl,
            default_delay=metadata.get("_default_message_delay")
            or self.limits.default_message_delay,
            with_delay=self.with_delay,
        )
        messages = self.sealed(messages, metadata)
        if found is None:
            # Lazy queues (v1.1, v2): created on first post, once the post is known to be valid.
            await self.storage.queues.create(project, queue, None)
        ids = await self.storage.messages.post(project, queue, messages, request[CLIENT_ID])
        return self.posted(request, ids)

    async def queue_metadata(self, project: str, queue: str) -> dict[str, Any] | None:
        """The metadata that shapes a post, or None when the queue is yet to be created."""
        try:
            return await self.storage.queues.get_metadata(project, queue)
        except QueueDoesNotExist:
            return None

    def message_documents(self, document: Any) -> Any:
        """The posted messages within the body: `{"messages": [...]}`."""
        if not isinstance(document, dict) or "messages" not in document:
            raise ValidationFailed("No messages were found in the request body.")
        return document["messages"]

    def posted(self, request: web.Request, ids: list[str]) -> web.Response:
        return ok(
            {"resources": [f"{request.path}/{i}" for i in ids]},
            status=201,
            headers={"Location": f"{request.path}?ids={','.join(ids)}"},
        )

    async def get(self, request: web.Request) -> web.Response:
        ids = param_list(request, "ids")
        if ids is not None:
            return await self.get_by_ids(request, ids)
        return await self.list_messages(request)

    async def get_by_ids(self, request: web.Request, ids: list[str]) -> web.Response:
        project, queue = scope(request)
        validation.message_listing(len(ids), self.limits)

        async def get() -> list[Message]:
            metadata = await self.attributes(project, queue)
            found = await self.storage.messages.bulk_get(project, queue, ids)
            return self.revealed(found, metadata) if found else []

        return self.by_ids(request, ids, await self.shaped(get))

    def by_ids(self, request: web.Request, ids: list[str], found: list[Message]) -> web.Response:
        project, queue = scope(request)
        if not found:
            raise MessageDoesNotExist(project, queue, ", ".join(ids))
        now = self.deps.clock()
        return ok(
            {"messages": [self.format_message(m, queue, now, fmt.held_by(m, now)) for m in found]}
        )

    def listing_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        readers = [("marker", param_str), ("limit", param_int)]
        for name, reader in readers + [(flag, param_bool) for flag in self.listing_flags]:
            value = reader(request, name)
            if value is not None:
                params[name] = value
        return params

    async def list_page(self, request: web.Request, params: dict[str, Any]) -> list[Message]:
        project, queue = scope(request)
        validation.message_listing(params.get("limit"), self.limits)
        try:
            marker = int(params["marker"]) if "marker" in params else None
        except ValueError:
            return []  # as Zaqar's storage: a marker it cannot read lists nothing
        if marker is not None:
            validation.message_marker(marker)  # no message is past it: never a 503 from storage

        async def page() -> list[Message]:
            metadata = await self.attributes(project, queue)
            found = await self.storage.messages.list(
                project,
                queue,
                marker=marker,
                limit=params.get("limit") or DEFAULT_MESSAGES_PER_PAGE,
                echo=params.get("echo", False),
                include_claimed=params.get("include_claimed", False),
                include_delayed=params.get("include_delayed", False)
                or self.lists_delayed(metadata),
                client_id=request[CLIENT_ID],
            )
            return self.revealed(found, metadata)

        return await self.shaped(page)

    def lists_delayed(self, metadata: dict[str, Any]) -> bool:
        """Zaqar 23 lists delayed messages too in a queue without `_default_message_delay`."""
        return self.with_delay and not metadata.get("_default_message_delay")

    async def list_messages(self, request: web.Request) -> web.Response:
        params = self.listing_params(request)
        return self.listed(request, params, await self.list_page(request, params))

    def listed(
        self, request: web.Request, params: dict[str, Any], found: list[Message]
    ) -> web.Response:
        links = []
        if found:
            params["marker"] = str(found[-1].marker)
            links.append({"rel": "next", "href": request.path + answers.query_string(params)})
        now = self.deps.clock()
        queue = scope(request)[1]
        return ok(
            {
                "messages": [
                    self.format_message(m, queue, now, fmt.held_by(m, now)) for m in found
                ],
                "links": links,
            }
        )

    async def delete(self, request: web.Request) -> web.Response:
        ids = param_list(request, "ids")
        pop = param_int(request, "pop")
        validation.message_deletion(ids, pop, self.limits)
        project, queue = scope(request)
        if ids:
            claim_ids = param_list(request, "claim_ids")
            await self.storage.messages.bulk_delete(project, queue, ids, claim_ids)
            return no_content()
        assert pop is not None

        async def take() -> list[Message]:
            metadata = await self.attributes(project, queue)
            self.cipher(metadata)  # no key: refused before anything is taken off the queue
            return self.revealed(await self.storage.messages.pop(project, queue, pop), metadata)

        popped = await self.shaped(take)
        now = self.deps.clock()
        return ok(
            {
                "messages": [
                    {"id": m.id, "ttl": m.ttl, "age": m.age(now), "body": m.body} for m in popped
                ]
            }
        )


class MessageItem(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)

        async def get() -> Message:
            metadata = await self.attributes(project, queue)
            m = await self.storage.messages.get(project, queue, request.match_info["message_id"])
            (m,) = self.revealed([m], metadata)
            return m

        m = await self.shaped(get)
        now = self.deps.clock()
        return ok(self.format_message(m, queue, now, fmt.held_by(m, now)))

    async def delete(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        await self.storage.messages.delete(
            project, queue, request.match_info["message_id"], param_str(request, "claim_id")
        )
        return no_content()


def messages_to_post(
    documents: Any, limits: ApiLimits, default_ttl: int, default_delay: int, with_delay: bool
) -> list[NewMessage]:
    """Sanitize then validate a list of posted messages (Zaqar's `sanitize` + `message_posting`)."""
    validation.document_type(documents, list)
    posted: list[NewMessage] = []
    for doc in documents:
        validation.document_type(doc, dict)
        ttl = validation.field(doc, "ttl", int, default_ttl)
        body = validation.field(doc, "body", None, None)
        delay = validation.field(doc, "delay", int, default_delay) if with_delay else 0
        posted.append(NewMessage(body=body, ttl=ttl, delay=delay))
    if not posted:
        raise ValidationFailed("No messages to enqueu.")
    for message in posted:
        validation.message_ttl(message.ttl, limits)
        if not 0 <= message.delay <= limits.max_message_delay:
            raise ValidationFailed(
                f"The Delay TTL for a message may not exceed {limits.max_message_delay} "
                "seconds, and must be at least 0 seconds long."
            )
    return posted
