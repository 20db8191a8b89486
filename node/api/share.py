"""Pre-signed URLs for a queue (v2 `POST /queues/{queue_name}/share`), signed with the
operator's secret; the checks and the signing are Zaqar's, in wire.signed_urls."""

from __future__ import annotations

from aiohttp import web

from node.api.endpoint import Endpoint, scope
from wire import signed_urls
from wire.answers import ok
from wire.request import json_body


class QueueShare(Endpoint):
    async def post(self, request: web.Request) -> web.Response:
        document = await json_body(request, self.limits.max_json_depth)
        project, queue = scope(request)
        key = self.deps.signed_url_key
        return ok(signed_urls.share(key, self.queue_path(queue), project, document))
