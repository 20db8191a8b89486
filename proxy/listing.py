"""`GET /{version}/queues` (and `GET /v2/topics`), answered from the catalog as the node would
answer it.

Names, marker and limit come from the catalog's placements (sorted by name). With
`detailed=true` the metadata comes from the owning partitions, one request per partition: that
partition's queues on the page are exactly its first k names after the marker, so
`?detailed=true&marker=M&limit=k` to one of its nodes returns them.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from proxy.forward import Forwarder, Outgoing
from proxy.routing import LAZY_CREATION, Router
from wire.answers import no_content, ok
from wire.checks import PROJECT, with_checks
from wire.limits import ApiLimits
from wire.listing import queue_listing
from wire.topics import container


class CatalogListing:
    def __init__(
        self, router: Router, forwarder: Forwarder, limits: ApiLimits | None = None
    ) -> None:
        self.router = router
        self.forwarder = forwarder
        self.limits = limits or ApiLimits()
        self._hooked = {
            version: with_checks(self.get, ids_required=version in LAZY_CREATION)
            for version in ("v1", "v1.1", "v2")
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Zaqar's before-checks (headers, media types), as the node runs them, then the listing."""
        return await self._hooked[request.match_info["version"]](request)

    async def get(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        listing = queue_listing(request, self.limits)
        project: str = request[PROJECT]
        kind = request.match_info.get("kind", "queues")
        catalog = self.router.catalog
        names_of = catalog.topic_names if kind == "topics" else catalog.queue_names
        names = await names_of(project, listing.marker, listing.page_size)
        metadata = {}
        if listing.detailed:
            metadata = await self._metadata(request, project, listing.marker, names, kind)
        listed = []
        for name in names:
            item: dict[str, Any] = {"name": name, "href": f"/{version}/{kind}/{name}"}
            if listing.detailed:
                item["metadata"] = metadata.get(name, {})
            listed.append(item)
        if version == "v1" and not listed:
            return no_content()  # v1 answers an empty page with 204
        return ok({kind: listed, "links": listing.links(request.path, names)})

    async def _metadata(
        self, request: web.Request, project: str, marker: str | None, names: list[str], kind: str
    ) -> dict[str, Any]:
        """Each listed queue's (or topic's) metadata, one request per owning partition."""
        by_partition: dict[str, list[str]] = defaultdict(list)
        for name in names:
            key = container(name) if kind == "topics" else name
            placement = await self.router.placement(project, key)
            partition = self.router.partition_for(project, key, placement)
            by_partition[partition.name].append(name)
        pages = await asyncio.gather(
            *(
                self._fetch(request, part, marker, len(owned), kind)
                for part, owned in by_partition.items()
            )
        )
        found: dict[str, Any] = {}
        for page in pages:
            found.update(page)
        return found

    async def _fetch(
        self, request: web.Request, partition: str, marker: str | None, count: int, kind: str
    ) -> dict[str, Any]:
        query: dict[str, Any] = {"detailed": "true", "limit": count}
        if marker:
            query["marker"] = marker
        base = await Outgoing.read(request)
        path = f"/{request.match_info['version']}/{kind}?{urlencode(query)}"
        out = Outgoing("GET", path, base.headers, b"")
        answer = await self.forwarder.send(self.router.partition(partition), out)
        if answer.status != 200:
            return {}
        document = json.loads(answer.body)
        return {q["name"]: q.get("metadata", {}) for q in document.get(kind, [])}
