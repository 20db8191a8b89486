"""Claim handlers (v2 shapes; v1.1 and v1 subclass them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import Counter

from node.api.endpoint import DEFAULT_MESSAGES_PER_CLAIM, Endpoint, scope
from node.models import Claim, DeadLetter, Message
from wire import validation
from wire.answers import no_content, ok
from wire.request import (
    json_body,
    optional_json_body,
    param_int,
)

DEAD_LETTERS = Counter(
    "marconi_node_dead_letters_total",
    "Messages taken out of their queue after _max_claim_count claims: into its dead-letter"
    " queue, or into the partition's outgoing pile for the migration worker to move there.",
)


def dead_letter_policy(metadata: dict[str, Any]) -> DeadLetter | None:
    """The queue's dead-letter policy: Zaqar moves a message that `_max_claim_count` claims
    have taken to `_dead_letter_queue` at its next claim, when the queue has both attributes
    (values that cannot work leave the policy off, where Zaqar would fail the claim)."""
    count = metadata.get("_max_claim_count")
    target = metadata.get("_dead_letter_queue")
    if not isinstance(count, int) or isinstance(count, bool) or not isinstance(target, str):
        return None
    if not validation.QUEUE_NAME.match(target):
        return None
    ttl = metadata.get("_dead_letter_queue_messages_ttl")
    valid_ttl = isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0
    return DeadLetter(target, count, ttl if valid_ttl else None)


class ClaimCollection(Endpoint):
    async def post(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        limit = param_int(request, "limit")
        ttl, grace = await self.claim_metadata(request)
        validation.claim_creation(ttl, grace, limit, self.limits)

        async def take() -> tuple[Claim, list[Message]]:
            metadata = await self.attributes(project, queue)
            self.cipher(metadata)  # no key: refused before any message is claimed
            policy = dead_letter_policy(metadata)
            if policy is not None:
                moved = await self.storage.claims.dead_letter(
                    project, queue, policy, limit=limit or DEFAULT_MESSAGES_PER_CLAIM
                )
                DEAD_LETTERS.inc(moved)
            claim, held = await self.storage.claims.create(
                project,
                queue,
                ttl=ttl,
                grace=grace,
                limit=limit or DEFAULT_MESSAGES_PER_CLAIM,
            )
            return claim, self.revealed(held, metadata) if held else []

        claim, held = await self.shaped(take)
        if not held:
            return no_content()
        now = self.deps.clock()
        try:
            return self.claimed(
                request, claim.id, [self.format_message(m, queue, now, claim.id) for m in held]
            )
        except Exception:
            # No answer, no claim: a client that never learns the claim's id could neither
            # delete its messages nor release them, and nobody else could claim them.
            await self.storage.claims.delete(project, queue, claim.id)
            raise

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        """(ttl, grace) from the body; a missing body means the defaults."""
        document = (
            await optional_json_body(request, self.limits.max_json_depth)
            if request.content_length
            else None
        )
        if document is None:
            return self.limits.default_claim_ttl, self.limits.default_claim_grace
        return validation.claim_metadata(document, self.limits)

    def claimed(
        self, request: web.Request, claim_id: str, messages: list[dict[str, Any]]
    ) -> web.Response:
        return ok(
            {"messages": messages},
            status=201,
            headers={"Location": f"{request.path}/{claim_id}"},
        )


class ClaimItem(Endpoint):
    async def get(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        claim_id = request.match_info["claim_id"]

        async def get() -> tuple[Claim, list[Message]]:
            metadata = await self.attributes(project, queue)
            claim, held = await self.storage.claims.get(project, queue, claim_id)
            return claim, self.revealed(held, metadata)

        claim, held = await self.shaped(get)
        now = self.deps.clock()
        return ok(
            {
                "age": claim.age(now),
                "ttl": claim.ttl,
                "messages": [self.format_message(m, queue, now, claim_id) for m in held],
                "href": request.path,
            }
        )

    async def patch(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        ttl, grace = await self.claim_metadata(request)
        validation.claim_updating(ttl, grace, self.limits)
        await self.storage.claims.update(
            project, queue, request.match_info["claim_id"], ttl=ttl, grace=grace
        )
        return no_content()

    async def claim_metadata(self, request: web.Request) -> tuple[int, int]:
        return validation.claim_metadata(
            await json_body(request, self.limits.max_json_depth), self.limits
        )

    async def delete(self, request: web.Request) -> web.Response:
        project, queue = scope(request)
        await self.storage.claims.delete(project, queue, request.match_info["claim_id"])
        return no_content()
