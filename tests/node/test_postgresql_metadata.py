"""Queue metadata kept by a PostgreSQL node process (`node.storage.postgresql.metadata`): a
request's reading answered from the process's copy, confirmed by the statement that acts, so a
change made through another node of the partition is seen by the next request, and a statement
that finds the metadata changed does nothing."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.errors import MetadataChanged, QueueDoesNotExist
from node.models import DeadLetter, NewMessage
from node.storage.postgresql import PostgresStorage
from node.storage.reading import reading
from tests.conftest import storage_uri
from tests.node.test_postgresql import CLIENT, P, Q, call, connect, listed
from tests.services import node_process

pytestmark = pytest.mark.postgresql

DELAYED = {"_default_message_delay": 30}


@pytest.fixture
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_uri("postgresql", tmp_path, request)


@pytest.fixture
async def nodes(uri: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two node processes' storage objects over one partition: `here` keeps copies, `there`
    changes the metadata behind its back."""
    here, there = await PostgresStorage.open(uri), await PostgresStorage.open(uri)
    try:
        await here.queues.create(P, Q, None)
        yield here, there
    finally:
        await here.close()
        await there.close()


async def stale(store: PostgresStorage, there: PostgresStorage, metadata: dict[str, Any]) -> None:
    """`store` keeps a copy of the queue's metadata, then `there` changes it."""
    with reading():
        assert await store.queues.get_metadata(P, Q) == {}
    await there.queues.set_metadata(P, Q, metadata)


async def counter(uri: str) -> int:
    async with connect(uri) as conn:
        found: int = await conn.fetchval(
            "SELECT counter FROM queues WHERE project = $1 AND name = $2", P, Q
        )
    return found


async def test_a_reading_is_answered_from_the_copy_and_confirmed_by_the_list(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    await here.messages.post(P, Q, [NewMessage("m", 600)], CLIENT)
    await stale(here, there, DELAYED)
    with reading():
        assert await here.queues.get_metadata(P, Q) == {}  # the copy: no round trip
        with pytest.raises(MetadataChanged):
            await listed(here)
    with reading():  # the list that found it refreshed the copy
        assert await here.queues.get_metadata(P, Q) == DELAYED
        assert [m.body for m in await listed(here)] == ["m"]


async def test_outside_a_reading_the_store_is_read(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """The deliverer, migrations and the queue's own resource confirm nothing afterwards."""
    here, there = nodes
    await stale(here, there, DELAYED)
    assert await here.queues.get_metadata(P, Q) == DELAYED


async def test_an_empty_page_confirms_too(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    await stale(here, there, DELAYED)
    with reading(), pytest.raises(MetadataChanged):
        await here.queues.get_metadata(P, Q)
        await listed(here)


async def test_a_post_on_changed_metadata_posts_nothing(
    nodes: tuple[PostgresStorage, PostgresStorage], uri: str
) -> None:
    here, there = nodes
    await stale(here, there, {"_default_message_ttl": 60})
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.messages.post(P, Q, [NewMessage("m", 600)], CLIENT)
    assert await listed(here) == [] and await counter(uri) == 0
    with reading():
        assert await here.queues.get_metadata(P, Q) == {"_default_message_ttl": 60}
        await here.messages.post(P, Q, [NewMessage("m", 60)], CLIENT)
    assert [m.ttl for m in await listed(here)] == [60]


async def test_a_post_to_a_queue_seen_missing_is_confirmed(uri: str) -> None:
    """A lazy post saw no queue; another node made it with metadata meanwhile."""
    here, there = await PostgresStorage.open(uri), await PostgresStorage.open(uri)
    try:
        with reading():
            with pytest.raises(QueueDoesNotExist):
                await here.queues.get_metadata(P, Q)
            await there.queues.create(P, Q, DELAYED)
            await here.queues.create(P, Q, None)  # the API's lazy creation: exists already
            with pytest.raises(MetadataChanged):
                await here.messages.post(P, Q, [NewMessage("m", 600)], CLIENT)
        assert await listed(here) == []
    finally:
        await here.close()
        await there.close()


async def test_a_claim_on_changed_metadata_claims_nothing(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    await here.messages.post(P, Q, [NewMessage("m", 600)], CLIENT)
    await stale(here, there, {"_max_claim_count": 1, "_dead_letter_queue": "dead"})
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.claims.create(P, Q, ttl=60, grace=60, limit=10)
    (message,) = await listed(here)
    assert message.claim_id is None and message.claim_count == 0
    with reading():
        await here.queues.get_metadata(P, Q)
        claim, held = await here.claims.create(P, Q, ttl=60, grace=60, limit=10)
        assert [m.id for m in held] == [message.id]
        await there.queues.set_metadata(P, Q, {})
        with pytest.raises(MetadataChanged):
            await here.claims.get(P, Q, claim.id)


async def test_an_empty_claim_confirms_too(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    await stale(here, there, DELAYED)
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.claims.create(P, Q, ttl=60, grace=60, limit=10)


async def test_pop_get_and_dead_letters_on_changed_metadata_do_nothing(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    await here.queues.create(P, "dead", None)
    (mid,) = await here.messages.post(P, Q, [NewMessage("m", 600)], CLIENT)
    await stale(here, there, DELAYED)
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.messages.pop(P, Q, 5)
    await there.queues.set_metadata(P, Q, {})
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.messages.get(P, Q, mid)
    await there.queues.set_metadata(P, Q, DELAYED)
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await here.claims.dead_letter(P, Q, DeadLetter("dead", 0, None), limit=10)
    assert [m.id for m in await listed(here)] == [mid]


async def test_a_queue_deleted_elsewhere_is_seen(
    nodes: tuple[PostgresStorage, PostgresStorage],
) -> None:
    here, there = nodes
    with reading():
        await here.queues.get_metadata(P, Q)
    await there.queues.delete(P, Q)
    with reading():
        await here.queues.get_metadata(P, Q)
        with pytest.raises(MetadataChanged):
            await listed(here)
    with reading(), pytest.raises(QueueDoesNotExist):
        await here.queues.get_metadata(P, Q)


def patch(url: str, metadata: dict[str, Any]) -> int:
    body = json.dumps(
        [{"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in metadata.items()]
    ).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="PATCH",
        headers={
            "Client-ID": CLIENT,
            "X-Project-ID": P,
            "Content-Type": "application/openstack-messaging-v2.0-json-patch",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        status: int = resp.status
    return status


@pytest.mark.slow
def test_a_change_through_one_node_is_seen_by_the_next_request_to_another(
    uri: str, tmp_path: Path
) -> None:
    """Two node processes of one partition: the queue's reserved attributes changed through
    one shape the very next list, post and claim through the other, which kept a copy."""
    with node_process(uri, log_dir=tmp_path) as one, node_process(uri, log_dir=tmp_path) as two:
        queue = f"/v2/queues/{Q}"
        status, body, _ = call(
            one.url + queue + "/messages", "POST", {"messages": [{"body": "later", "delay": 60}]}
        )
        assert status == 201, body
        # No _default_message_delay: Zaqar 23 lists delayed messages too.
        status, body, _ = call(one.url + queue + "/messages?echo=true")
        assert status == 200 and [m["body"] for m in body["messages"]] == ["later"]

        assert (
            patch(two.url + queue, {"_default_message_delay": 5, "_default_message_ttl": 120})
            == 200
        )
        status, body, _ = call(one.url + queue + "/messages?echo=true")
        assert status in (200, 204) and not (body or {}).get("messages"), body
        status, body, _ = call(
            one.url + queue + "/messages", "POST", {"messages": [{"body": "now"}]}
        )
        assert status == 201, body
        status, body, _ = call(one.url + queue + "/messages?echo=true&include_delayed=true")
        assert {m["body"]: m["ttl"] for m in body["messages"]} == {"later": 3600, "now": 120}
