"""The bench's statement measurement runs the driver's own hot statements with the arguments
they take today: a change of a statement's parameters must not break `make bench` unseen."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import pgrequest, statements
from tests.conftest import storage_uri


@pytest.mark.postgresql
async def test_the_statement_measurement_runs_on_this_releases_statements(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statements, "ROUNDS", 3)
    costs = await statements._measure(storage_uri("postgresql", tmp_path, request))
    assert [c.statement for c in costs] == [
        "post 1 message",
        "list 10 messages",
        "check a connection out",
    ]
    assert all(c.sqlalchemy_us > 0 and c.driver_us > 0 for c in costs)


@pytest.mark.postgresql
async def test_the_request_measurement_runs_both_ways(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    costs = await pgrequest.measure(storage_uri("postgresql", tmp_path, request), 1000, 3)
    assert sorted(costs) == sorted(
        f"{what}: metadata {how}"
        for what in ("list 10", "post 1")
        for how in ("read apart", "confirmed")
    )
    assert all(node > 0 for node, _ in costs.values())
