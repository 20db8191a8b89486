"""Worker settings from the environment, and the ones that cannot work refused."""

from __future__ import annotations

import dataclasses

import pytest

from migrate.settings import WorkerSettings


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARCONI_CATALOG_URL", "http://etcd-a:2379,http://etcd-b:2379")
    monkeypatch.setenv("MARCONI_WORKER_LEASE_TTL", "10")
    monkeypatch.setenv("MARCONI_WORKER_FREEZE_LIMIT", "0.25")
    monkeypatch.setenv("MARCONI_WORKER_PURGE_GRACE", "300")
    monkeypatch.setenv("MARCONI_LOG_JSON", "yes")
    s = WorkerSettings.from_env()
    assert (s.catalog_url, s.lease_ttl, s.freeze_limit, s.purge_grace, s.log_json) == (
        "http://etcd-a:2379,http://etcd-b:2379",
        10,
        0.25,
        300.0,
        True,
    )
    assert s.batch == WorkerSettings().batch


@pytest.mark.parametrize(
    "change", [{"lease_ttl": 1}, {"batch": 0}, {"copy_rate": 0.0}, {"freeze_limit": -1.0}]
)
def test_settings_that_cannot_work_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(WorkerSettings(), **change)  # type: ignore[arg-type]
