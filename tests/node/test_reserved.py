"""Queue reserved attributes as Zaqar 23 answers and honours them, and messages encrypted at
rest, over real HTTP on every driver, straight to a node and through a proxy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import create_app
from node.api.deps import Deps
from node.encryption import MessageCipher
from node.storage import open_storage
from tests.conftest import FakeClock
from tests.node.conftest import CIPHER, Api, serve_api
from tests.node.test_api_v2 import RESERVED, assert_error

Q = "/v2/queues/vault"
PATCH = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
BODIES: list[Any] = [
    {"card": "4111", "n": [1, 2]},
    "a string",
    ["x", 1],
    42,
    None,
    "",
    "eyJhIjoxfQ==",
]


@pytest.fixture(
    params=[
        "direct",
        "proxy",
        pytest.param("direct-postgresql", marks=pytest.mark.postgresql),
        pytest.param("proxy-postgresql", marks=pytest.mark.postgresql),
        pytest.param("direct-mongodb", marks=pytest.mark.mongodb),
        pytest.param("proxy-mongodb", marks=pytest.mark.mongodb),
    ]
)
async def api(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Api]:
    async with serve_api(request, tmp_path, clock) as served:
        yield served


async def patch(api: Api, ops: list[dict[str, Any]], queue: str = Q) -> tuple[int, Any]:
    status, body, _ = await api.request("PATCH", queue, data=json.dumps(ops), headers=PATCH)
    return status, body


# --- what GET, PUT and PATCH answer ------------------------------------------------------------


async def test_every_reserved_attribute_shows_its_default(api: Api) -> None:
    assert (await api.request("PUT", Q, json={"color": "blue"}))[0] == 201
    status, body, _ = await api.request("GET", Q)
    assert (status, body) == (200, {"color": "blue", **RESERVED})
    status, body, _ = await api.request("GET", "/v2/queues/never-made")
    assert (status, body) == (200, RESERVED)  # a lazy queue reads as empty


async def test_set_attributes_are_answered_as_stored(api: Api) -> None:
    given = {
        "_max_messages_post_size": 1024,
        "_default_message_ttl": 120,
        "_default_message_delay": 5,
        "_dead_letter_queue": "graveyard",
        "_dead_letter_queue_messages_ttl": 7799,
        "_max_claim_count": 2,
        "_enable_encrypt_messages": True,
        "owner": "ops",
    }
    assert (await api.request("PUT", Q, json=given))[0] == 201
    assert (await api.request("GET", Q))[1] == given
    # Falsy values show the defaults, as in Zaqar (`if not metadata.get(key)`); null is unset.
    falsy = {"_max_claim_count": 0, "_enable_encrypt_messages": False, "_dead_letter_queue": None}
    assert (await api.request("PUT", Q, json=falsy))[0] == 204
    assert (await api.request("GET", Q))[1] == RESERVED


@pytest.mark.parametrize(
    ("metadata", "description"),
    [
        ({"_max_claim_count": "2"}, "_max_claim_count must be integer."),
        ({"_max_claim_count": 1.5}, "_max_claim_count must be integer."),
        ({"_dead_letter_queue_messages_ttl": "60"}, "must be integer"),
        ({"_dead_letter_queue_messages_ttl": 59}, "The TTL for a message may not exceed"),
        ({"_dead_letter_queue_messages_ttl": 1209601}, "The TTL for a message may not exceed"),
        ({"_default_message_ttl": 0}, "_default_message_ttl can not exceed"),
        ({"_default_message_ttl": ""}, "_default_message_ttl must be integer."),
        ({"_default_message_delay": 901}, "The TTL can not exceed 900 seconds"),
        ({"_default_message_delay": -1}, "The TTL can not exceed 900 seconds"),
        ({"_max_messages_post_size": 0}, "_max_messages_post_size can not exceed"),
        ({"_enable_encrypt_messages": "yes"}, "_enable_encrypt_messages must be boolean."),
        ({"_enable_encrypt_messages": 1}, "_enable_encrypt_messages must be boolean."),
        ({"_dead_letter_queue": "no spaces"}, "_dead_letter_queue must be a queue name"),
        ({"_dead_letter_queue": 7}, "_dead_letter_queue must be a queue name"),
    ],
)
async def test_put_refuses_bad_reserved_values(
    api: Api, metadata: dict[str, Any], description: str
) -> None:
    status, body, _ = await api.request("PUT", Q, json=metadata)
    assert_error(status, body, 400, "Invalid API request")
    assert description in body["description"]
    assert (await api.request("PUT", Q, json={"ok": 1}))[0] == 201
    # The same value through PATCH: Zaqar's "Invalid request body", and nothing changed.
    key, value = next(iter(metadata.items()))
    status, body = await patch(api, [{"op": "add", "path": f"/metadata/{key}", "value": value}])
    assert_error(status, body, 400, "Invalid request body")
    assert description in body["description"]
    assert (await api.request("GET", Q))[1] == {"ok": 1, **RESERVED}


async def test_null_reserved_values_are_accepted(api: Api) -> None:
    # What GET answers can be sent back as it is (python-zaqarclient does).
    assert (await api.request("PUT", Q, json=RESERVED))[0] == 201
    assert (await api.request("GET", Q))[1] == RESERVED


async def test_patch_treats_reserved_attributes_as_present(api: Api) -> None:
    assert (await api.request("PUT", Q, json={"a": 1}))[0] == 201
    ops = [
        {"op": "replace", "path": "/metadata/_max_claim_count", "value": 3},
        {"op": "replace", "path": "/metadata/_dead_letter_queue", "value": "dlq"},
        {"op": "remove", "path": "/metadata/_dead_letter_queue_messages_ttl"},
        {"op": "remove", "path": "/metadata/_enable_encrypt_messages"},
        {"op": "add", "path": "/metadata/_dead_letter_queue_messages_ttl", "value": 3600},
    ]
    status, body = await patch(api, ops)
    expected = {
        **RESERVED,
        "a": 1,
        "_max_claim_count": 3,
        "_dead_letter_queue": "dlq",
        "_dead_letter_queue_messages_ttl": 3600,
    }
    assert (status, body) == (200, expected)
    assert (await api.request("GET", Q))[1] == expected
    status, body = await patch(api, [{"op": "remove", "path": "/metadata/_max_claim_count"}])
    assert status == 200 and body["_max_claim_count"] is None
    status, body = await patch(api, [{"op": "remove", "path": "/metadata/nothing"}])
    assert_error(status, body, 409)
    status, body, _ = await api.request("PATCH", Q, data=b"", headers=PATCH)
    assert_error(status, body, 400, "Invalid request body")


# --- what the attributes do to posts and listings ------------------------------------------------


async def test_delayed_messages_are_listed_unless_the_queue_sets_a_default_delay(api: Api) -> None:
    """Zaqar 23 filters delayed messages out of a listing only in a queue that has
    `_default_message_delay`."""
    post = {"messages": [{"body": "later", "delay": 30}]}
    assert (await api.request("POST", f"{Q}/messages", json=post))[0] == 201
    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == ["later"]
    assert (await api.request("PUT", Q, json={"_default_message_delay": 10}))[0] == 204
    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert body["messages"] == []
    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_delayed=true")
    assert [m["body"] for m in body["messages"]] == ["later"]


async def test_queue_post_size_limit(api: Api) -> None:
    assert (await api.request("PUT", Q, json={"_max_messages_post_size": 100}))[0] == 201
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": "x" * 200}]}
    )
    assert_error(status, body, 400)
    assert "max size for current queue is 100" in body["description"]


# --- messages encrypted at rest ------------------------------------------------------------------


async def stored_bodies(api: Api, queue: str = "vault") -> list[Any]:
    """The bodies as the partition holding the queue stores them."""
    for deps in api.every:
        found = await deps.storage.messages.list(
            "test-project",
            queue,
            marker=None,
            limit=20,
            echo=True,
            include_claimed=True,
            include_delayed=True,
            client_id="",
        )
        if found:
            return [m.body for m in found]
    return []


async def test_encrypted_queue_stores_ciphertext_and_answers_plaintext(api: Api) -> None:
    assert (await api.request("PUT", Q, json={"_enable_encrypt_messages": True}))[0] == 201
    status, body, _ = await api.request(
        "POST", f"{Q}/messages", json={"messages": [{"body": b} for b in BODIES]}
    )
    assert status == 201
    ids = [href.rsplit("/", 1)[1] for href in body["resources"]]
    stored = await stored_bodies(api)
    assert len(stored) == len(BODIES)
    assert all(isinstance(s, str) for s in stored) and not set(map(str, BODIES)) & set(stored)
    assert [CIPHER.decrypt(s) for s in stored] == BODIES

    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true&limit=20")
    assert [m["body"] for m in body["messages"]] == BODIES
    _, body, _ = await api.request("GET", f"{Q}/messages/{ids[0]}")
    assert body["body"] == BODIES[0]
    _, body, _ = await api.request("GET", f"{Q}/messages?ids={ids[1]},{ids[2]}")
    assert sorted(json.dumps(m["body"]) for m in body["messages"]) == sorted(
        json.dumps(b) for b in BODIES[1:3]
    )
    status, body, headers = await api.request("POST", f"{Q}/claims?limit=2", json={"ttl": 60})
    assert status == 201 and [m["body"] for m in body["messages"]] == BODIES[:2]
    _, body, _ = await api.request("GET", headers["Location"])
    assert [m["body"] for m in body["messages"]] == BODIES[:2]
    status, body, _ = await api.request("DELETE", f"{Q}/messages?pop=2")
    assert status == 200 and [m["body"] for m in body["messages"]] == BODIES[2:4]


async def test_turning_encryption_on_and_off(api: Api) -> None:
    post = {"messages": [{"body": {"before": True}}]}
    assert (await api.request("POST", f"{Q}/messages", json=post))[0] == 201
    assert (await api.request("PUT", Q, json={"_enable_encrypt_messages": True}))[0] == 204
    post = {"messages": [{"body": {"after": True}}]}
    assert (await api.request("POST", f"{Q}/messages", json=post))[0] == 201
    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    # A body stored in clear before is answered as stored; the new one decrypted.
    assert [m["body"] for m in body["messages"]] == [{"before": True}, {"after": True}]
    stored = await stored_bodies(api)
    assert stored[0] == {"before": True} and isinstance(stored[1], str)
    assert (await api.request("PUT", Q, json={}))[0] == 204
    _, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert body["messages"][1]["body"] == stored[1]  # as Zaqar: no longer decrypted


@pytest.fixture
async def keyless(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """A node given no message encryption key."""
    deps = Deps(storage=await open_storage(f"sqlite:///{tmp_path}/p.db", clock), clock=clock)
    client = TestClient(TestServer(create_app(deps, gc_interval=3600), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, clock, deps)
    finally:
        await client.close()


async def test_encryption_without_a_key_is_refused_clearly(keyless: Api) -> None:
    api = keyless
    status, body, _ = await api.request("PUT", Q, json={"_enable_encrypt_messages": True})
    assert_error(status, body, 400)
    assert "MARCONI_MESSAGE_ENCRYPTION_KEY" in body["description"]
    # A queue that encrypts, on a node that lost its key: nothing stored in clear, nothing
    # answered as ciphertext, and a 503 that says why.
    assert (await api.request("PUT", Q, json={"a": 1}))[0] == 201
    status, body = await patch(
        api, [{"op": "add", "path": "/metadata/_enable_encrypt_messages", "value": True}]
    )
    assert_error(status, body, 400, "Invalid request body")
    await api.deps.storage.queues.set_metadata("test-project", "vault", {ENCRYPTED: True})
    post = {"messages": [{"body": "secret"}]}
    status, body, headers = await api.request("POST", f"{Q}/messages", json=post)
    assert_error(status, body, 503)
    assert "no message encryption key" in body["description"]
    assert await stored_bodies(api) == []
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true")
    assert_error(status, body, 503)


ENCRYPTED = "_enable_encrypt_messages"


# --- dead letters --------------------------------------------------------------------------------


async def partition_of(api: Api, queue: str) -> str:
    """The partition that holds `queue` (straight to a node: its only one)."""
    for deps in api.every:
        if await deps.storage.queues.exists("test-project", queue):
            return deps.partition
    raise AssertionError(f"{queue} is on no partition")


async def claim_bodies(api: Api, queue: str = Q) -> list[Any]:
    """Claim what there is, release the claim, and say what it held."""
    status, body, headers = await api.request("POST", f"{queue}/claims", json={"ttl": 60})
    if status == 204:
        return []
    assert status == 201, body
    assert (await api.request("DELETE", headers["Location"]))[0] == 204
    return [m["body"] for m in body["messages"]]


async def test_a_message_claimed_too_often_moves_to_the_dead_letter_queue(api: Api) -> None:
    dead = "/v2/queues/vault-dead"
    assert (await api.request("PUT", dead, json={"kind": "dlq"}))[0] == 201
    metadata = {
        "_max_claim_count": 2,
        "_dead_letter_queue": "vault-dead",
        "_dead_letter_queue_messages_ttl": 7200,
        "_enable_encrypt_messages": True,
    }
    assert (await api.request("PUT", Q, json=metadata))[0] == 201
    if await partition_of(api, "vault") != await partition_of(api, "vault-dead"):
        pytest.skip("these names are placed apart; the next test covers that")
    post = {"messages": [{"body": {"n": 1}, "ttl": 600}, {"body": {"n": 2}, "ttl": 600}]}
    assert (await api.request("POST", f"{Q}/messages", json=post))[0] == 201
    assert await claim_bodies(api) == [{"n": 1}, {"n": 2}]
    assert await claim_bodies(api) == [{"n": 1}, {"n": 2}]
    assert await claim_bodies(api) == []  # the third claim finds them dead-lettered
    _, body, _ = await api.request("GET", f"{Q}/stats")
    assert body["messages"]["total"] == 0
    _, body, _ = await api.request("GET", f"{dead}/messages?echo=true")
    # Decrypted by the source's key and answered as posted? The dead-letter queue does not
    # encrypt, so its messages are answered as stored: still ciphertext, as in Zaqar.
    assert [CIPHER.decrypt(m["body"]) for m in body["messages"]] == [{"n": 1}, {"n": 2}]
    assert [m["ttl"] for m in body["messages"]] == [7200, 7200]
    assert (await api.request("PUT", dead, json={ENCRYPTED: True}))[0] == 204
    _, body, _ = await api.request("GET", f"{dead}/messages?echo=true")
    assert [m["body"] for m in body["messages"]] == [{"n": 1}, {"n": 2}]
    # Moved once: consumed there, they are gone everywhere.
    assert await claim_bodies(api, dead) == [{"n": 1}, {"n": 2}]
    status, body, _ = await api.request("DELETE", f"{dead}/messages?pop=2")
    assert status == 200 and len(body["messages"]) == 2
    assert await claim_bodies(api) == [] and await claim_bodies(api, dead) == []


async def test_without_both_attributes_nothing_is_dead_lettered(api: Api) -> None:
    assert (await api.request("PUT", "/v2/queues/vault-dead"))[0] == 201
    assert (await api.request("PUT", Q, json={"_max_claim_count": 1}))[0] == 201
    assert (await api.request("POST", f"{Q}/messages", json={"messages": [{"body": 1}]}))[0] == 201
    for _ in range(3):
        assert await claim_bodies(api) == [1]


async def test_a_dead_letter_queue_on_another_partition_takes_them_out_of_the_queue(
    api: Api,
) -> None:
    """A dead-letter queue placed elsewhere: the claim takes the message out of the queue all
    the same, into its partition's outgoing pile, which the migration worker moves (none runs
    here: tests/migrate/test_dead_letters.py); it is claimed, listed and counted no more."""
    names = [f"elsewhere-{i}" for i in range(16)]
    for name in names:
        assert (await api.request("PUT", f"/v2/queues/{name}"))[0] == 201
    assert (await api.request("PUT", Q))[0] == 201
    here = await partition_of(api, "vault")
    apart = [n for n in names if await partition_of(api, n) != here]
    if not apart:
        pytest.skip("one partition: every queue is here")
    metadata = {"_max_claim_count": 1, "_dead_letter_queue": apart[0]}
    assert (await api.request("PUT", Q, json=metadata))[0] == 204
    assert (await api.request("POST", f"{Q}/messages", json={"messages": [{"body": 1}]}))[0] == 201
    assert await claim_bodies(api) == [1]
    for _ in range(2):
        assert await claim_bodies(api) == []
    _, body, _ = await api.request("GET", f"{Q}/stats")
    assert body["messages"]["total"] == 0
    status, body, _ = await api.request("GET", f"{Q}/messages?echo=true&include_claimed=true")
    assert status == 200 and body["messages"] == []
    _, body, _ = await api.request("GET", f"/v2/queues/{apart[0]}/stats")
    assert body["messages"]["total"] == 0  # until a worker moves it


def test_the_key_comes_from_the_environment_and_never_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from node.settings import NodeSettings

    monkeypatch.setenv("MARCONI_MESSAGE_ENCRYPTION_KEY", "s3cret-key")
    settings = NodeSettings.from_env()
    assert settings.message_encryption_key == "s3cret-key"
    assert "s3cret-key" not in repr(settings)
    cipher = MessageCipher(settings.message_encryption_key)
    assert "s3cret" not in repr(cipher)
    assert cipher.decrypt(cipher.encrypt({"a": [1]})) == {"a": [1]}
    assert MessageCipher("another key").decrypt(cipher.encrypt("x")) != "x"
    with pytest.raises(ValueError):
        MessageCipher("")
