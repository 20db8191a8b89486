from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.storage import open_storage
from node.storage.base import Storage
from tests.keystone import Keystone, keystone
from tests.services import Etcd, create_database, etcd, ferretdb, postgres_cluster


class FakeClock:
    """A clock tests move by hand, so expiry is tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def mongodb_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """`MONGODB_URL` when set (a real MongoDB), else a FerretDB started for this session over
    PostgreSQL, which serves equality filters from the database as MongoDB's indexes would."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    # The session's one PostgreSQL (the PostgreSQL driver's tests use it too), a database apart.
    database = create_database(request.getfixturevalue("postgresql_url"), "ferretdb")
    with ferretdb(tmp_path_factory.mktemp("ferretdb"), database) as url:
        yield url


@pytest.fixture(scope="session")
def ferretdb_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A FerretDB on its SQLite backend, for the tests that hold on both backends."""
    with ferretdb(tmp_path_factory.mktemp("ferretdb-sqlite")) as url:
        yield url


@pytest.fixture(scope="session")
def postgresql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL for the session; tests isolate themselves by schema."""
    with postgres_cluster(tmp_path_factory.mktemp("postgresql")) as url:
        yield url


_db_counter = 0


def storage_uri(driver: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty storage location for one test."""
    global _db_counter
    if driver == "sqlite":
        return f"sqlite:///{tmp_path}/partition.db"
    _db_counter += 1
    if driver == "postgresql":
        base = request.getfixturevalue("postgresql_url")
        return f"{base}?schema=marconi_test_{os.getpid()}_{_db_counter}"
    base = request.getfixturevalue("mongodb_url")
    return f"{base.rstrip('/')}/marconi_test_{os.getpid()}_{_db_counter}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("mongodb", marks=pytest.mark.mongodb),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ],
)
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Storage]:
    """Each driver over a fresh, empty location, driven by the fake clock."""
    store = await open_storage(storage_uri(request.param, tmp_path, request), clock)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One real etcd for the session; tests isolate themselves by key prefix."""
    with etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(scope="session")
def keystone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """One real Keystone for the session (its users in tests.keystone); tokens are cached."""
    with keystone(tmp_path_factory.mktemp("keystone")) as server:
        yield server


_prefix_counter = 0


def unique_prefix() -> str:
    global _prefix_counter
    _prefix_counter += 1
    return f"/test-{os.getpid()}-{_prefix_counter}/"
