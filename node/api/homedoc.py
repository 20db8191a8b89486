"""JSON home documents (one per API version) and the versions document at `/`."""

from __future__ import annotations

from typing import Any

Resource = tuple[str, str, dict[str, str], list[str]]  # rel, href-template, vars, methods


def home_document(prefix: str, resources: list[Resource]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for rel, template, variables, methods in resources:
        entry: dict[str, Any] = {
            "hints": {"allow": methods, "formats": {"application/json": {}}},
        }
        if variables:
            entry["href-template"] = prefix + template
            entry["href-vars"] = variables
        else:
            entry["href"] = prefix + template
        doc["rel/" + rel] = entry
    return {"resources": doc}


def _version(vid: str, status: str, updated: str, prefix: str, media: str) -> dict[str, Any]:
    return {
        "id": vid,
        "status": status,
        "updated": updated,
        "media-types": [{"base": "application/json", "type": media}],
        "links": [{"href": prefix + "/", "rel": "self"}],
    }


VERSIONS: dict[str, Any] = {
    "versions": [
        _version(
            "1",
            "DEPRECATED",
            "2014-9-11T17:47:05Z",
            "/v1",
            "application/vnd.openstack.messaging-v1+json",
        ),
        _version(
            "1.1",
            "DEPRECATED",
            "2016-7-29T02:22:47Z",
            "/v1.1",
            "application/vnd.openstack.messaging-v1_1+json",
        ),
        _version(
            "2",
            "CURRENT",
            "2014-9-24T04:06:47Z",
            "/v2",
            "application/vnd.openstack.messaging-v2+json",
        ),
    ]
}
