"""A queue listing's parameters (marker, limit, detailed), read and validated as Zaqar does; the
node lists from its storage, the proxy from the catalog, with the same parameters and links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wire import validation
from wire.answers import query_string
from wire.limits import ApiLimits
from wire.request import param_bool, param_int, param_str

DEFAULT_PAGE_SIZE = 10


@dataclass(frozen=True, slots=True)
class QueueListing:
    """A queue listing's parameters, validated; `params` are those the request gave, which the
    `next` link repeats."""

    params: dict[str, Any]
    marker: str | None
    limit: int | None
    detailed: bool | None

    @property
    def page_size(self) -> int:
        return self.limit or DEFAULT_PAGE_SIZE

    def links(self, path: str, names: list[str]) -> list[dict[str, str]]:
        """The `next` link after a page ending at `names[-1]`; none after an empty page."""
        if not names:
            return []
        params = {**self.params, "marker": names[-1]}
        return [{"rel": "next", "href": path + query_string(params)}]


def queue_listing(request: web.Request, limits: ApiLimits) -> QueueListing:
    marker = param_str(request, "marker")
    limit = param_int(request, "limit")
    detailed = param_bool(request, "detailed")
    given = (("marker", marker), ("limit", limit), ("detailed", detailed))
    validation.queue_listing(limit, limits)
    return QueueListing({k: v for k, v in given if v is not None}, marker, limit, detailed)
