"""Claims under contention over HTTP: concurrent claimers never share a live message."""

from __future__ import annotations

import asyncio
import uuid

from tests.node.conftest import Api

Q = "/v2/queues/contended"


async def test_concurrent_claimers_get_disjoint_messages(api: Api) -> None:
    for start in range(0, 200, 20):
        status, _, _ = await api.request(
            "POST",
            f"{Q}/messages",
            json={"messages": [{"body": i, "ttl": 600} for i in range(start, start + 20)]},
        )
        assert status == 201

    async def claimer() -> list[tuple[str, int]]:
        held: list[tuple[str, int]] = []
        me = {"Client-ID": str(uuid.uuid4())}
        while True:
            status, body, headers = await api.request(
                "POST", f"{Q}/claims?limit=5", json={"ttl": 300, "grace": 60}, headers=me
            )
            if status == 204:
                return held
            assert status == 201, body
            claim_id = headers["Location"].rsplit("/", 1)[1]
            held.extend((claim_id, m["body"]) for m in body["messages"])

    results = await asyncio.gather(*(claimer() for _ in range(12)))
    bodies = [b for r in results for _, b in r]
    assert sorted(bodies) == list(range(200)), "each message claimed exactly once"
    assert sum(1 for r in results if r) > 1, "the work was actually spread over claimers"


async def test_consumers_delete_with_claims_fifo(api: Api) -> None:
    """A single producer's messages come out in order through claim + delete."""
    for i in range(40):
        await api.request("POST", f"{Q}/messages", json={"messages": [{"body": i}]})
    seen: list[int] = []
    while True:
        status, body, headers = await api.request("POST", f"{Q}/claims?limit=7")
        if status == 204:
            break
        claim_id = headers["Location"].rsplit("/", 1)[1]
        for m in body["messages"]:
            seen.append(m["body"])
            status, _, _ = await api.request(
                "DELETE", f"{Q}/messages/{m['id']}?claim_id={claim_id}"
            )
            assert status == 204
    assert seen == list(range(40))
    status, body, _ = await api.request("GET", f"{Q}/stats")
    assert body["messages"]["total"] == 0
