"""The OpenAPI description (wire/openapi.json) against the code: the same routes as the node's
v2 table and the proxy's admin API, served by the proxy, and every answer schemathesis provokes,
straight from a node and through the proxy, as it describes (no 5xx but 503 with Retry-After)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.catalog import Catalog
from catalog.etcd import EtcdStore
from catalog.keys import Keys
from catalog.memory import MemoryStore
from catalog.records import Partition
from node.api.app import create_app as create_node
from node.api.deps import Deps
from node.storage import open_storage
from proxy.app import create_app as create_proxy
from proxy.settings import ProxySettings
from tests.conftest import FakeClock, unique_prefix
from tests.proxy.cluster import ADMIN, cluster
from tests.proxy.conftest import call
from tests.services import Etcd, free_port, node_process, stop, wait_for_port
from wire import openapi

METHODS = {"get", "put", "post", "patch", "delete", "head"}
JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"


@schemathesis.serializer(JSON_PATCH)
def _json_patch(ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    return {"data": json.dumps(value).encode()}


MAX_EXAMPLES = 4  # per operation and mode: a bounded run, seconds against each server


def described() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi.document()["paths"].items()
        for method in item
        if method in METHODS
    }


def served(app: web.Application, prefix: str) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(prefix)
    }


async def test_the_description_has_exactly_the_node_v2_and_admin_routes(
    tmp_path: Path, clock: FakeClock
) -> None:
    storage = await open_storage(f"sqlite:///{tmp_path}/node.db", clock)
    try:
        node = served(create_node(Deps(storage=storage, clock=clock)), "/v2")
    finally:
        await storage.close()
    admin = served(create_proxy(ProxySettings(), MemoryStore()), "/admin")
    assert admin and node
    documented = described()
    assert {r for r in documented if r[1].startswith("/v2")} == node
    assert {r for r in documented if r[1].startswith("/admin")} == admin
    assert {r[1] for r in documented} - {r[1] for r in node | admin} == set()


async def test_the_proxy_serves_the_description_without_a_token(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with cluster(tmp_path, clock) as c:
        status, body, headers = await call(c.proxy, "GET", openapi.PATH, headers=ADMIN)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        assert body == openapi.document()
        assert body["openapi"] == "3.1.0"


# --- schemathesis against real processes ----------------------------------------------------


def proxy_process(etcd_url: str, prefix: str, log: Path) -> Iterator[str]:
    port = free_port()
    argv = ["proxy", "--catalog", etcd_url, "--catalog-prefix", prefix, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marconi.cli", *argv, "--log-json"], stdout=out, stderr=out
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def servers(
    etcd_server: Etcd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A node of each of two partitions, and a proxy over them (`marconi proxy`, noauth)."""
    folder = tmp_path_factory.mktemp("openapi")
    prefix = unique_prefix()
    with (
        node_process(f"sqlite:///{folder}/p1.db", "p1", folder) as p1,
        node_process(f"sqlite:///{folder}/p2.db", "p2", folder) as p2,
    ):

        async def register() -> None:
            store = EtcdStore(etcd_server.url)
            try:
                catalog = Catalog(store, Keys(prefix))
                for name, node in (("p1", p1), ("p2", p2)):
                    await catalog.add_partition(Partition(name, (node.url,)))
            finally:
                await store.close()

        asyncio.run(register())
        proxies = proxy_process(etcd_server.url, prefix, folder / "proxy.log")
        proxy = next(proxies)
        try:
            yield {"node": p1.url, "proxy": proxy}
        finally:
            proxies.close()


CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def answers_as_described(base_url: str) -> list[str]:
    """Run every v2 operation's generated cases, valid and invalid, against `base_url`; the
    failures, as text. Invalid input too must answer as described: a 4xx with Zaqar's body."""
    schema = schemathesis.openapi.from_dict(openapi.document()).include(path_regex="^/v2")
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            for mode in GenerationMode:
                check_operation(result.ok(), mode, base_url, session, failures)
    return failures


def check_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    failures: list[str],
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases at every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base_url, session=session, timeout=10)
        except (ValueError, requests.exceptions.InvalidHeader):
            return  # an invalid case that cannot be sent (a header no client may send)
        status = response.status_code
        if status >= 500 and not (status == 503 and "Retry-After" in response.headers):
            failures.append(f"{case.method} {case.formatted_path}: {status} {response.text}")
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis' failures, each with what was wrong
            failures.append(f"{mode.value} {case.method} {case.formatted_path}: {exc}"[:2000])

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing in this operation's description can be made invalid


@pytest.mark.slow
@pytest.mark.parametrize("server", ["node", "proxy"])
def test_every_answer_matches_the_description(servers: dict[str, str], server: str) -> None:
    failures = answers_as_described(servers[server])
    assert failures == [], "\n\n".join(failures[:10])
