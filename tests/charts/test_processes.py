"""The chart's containers against the code they run: the flags parse with the real `marconi`
parser, every MARCONI_* variable the chart sets is one the settings read, and the settings that
result are the ones the chart means (listening on the pod's address, on the port it declares)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from marconi.cli import build_parser, node_settings, proxy_settings, worker_settings
from proxy.settings import AuthMode, PlacementKey
from tests.charts.chart import EXAMPLE_VALUES, FULLNAME, Helm, Manifests, container

# What a secretKeyRef would give the container.
STAND_IN_URI = "mongodb://stand-in:27017/marconi"
S = TypeVar("S")


class RecordingEnviron(dict[str, str]):
    """`os.environ` as the settings see it, noting every name they look up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def start(
    monkeypatch: pytest.MonkeyPatch,
    workload: dict[str, Any],
    command: str,
    settings: Callable[[argparse.Namespace], S],
) -> S:
    """The settings `marconi <args>` would run with in this container's environment; fails if
    the container sets a MARCONI_* variable that they never read."""
    c = container(workload)
    env = {e["name"]: e.get("value", STAND_IN_URI) for e in c["env"]}
    recording = RecordingEnviron(env)
    monkeypatch.setattr(os, "environ", recording)
    args = build_parser().parse_args(c["args"])
    assert args.command == command
    made = settings(args)
    assert {name for name in env if name.startswith("MARCONI_")} - recording.read == set()
    return made


def port(workload: dict[str, Any]) -> int:
    (declared,) = container(workload)["ports"]
    value: int = declared["containerPort"]
    return value


def test_each_node_serves_its_partition_from_its_secret_on_the_declared_port(
    monkeypatch: pytest.MonkeyPatch, example: Manifests
) -> None:
    for name in ("p1", "p2", "p3"):
        workload = example.named("Deployment", f"{FULLNAME}-node-{name}")
        settings = start(monkeypatch, workload, "node", node_settings)
        assert settings.partition == name
        assert settings.storage == STAND_IN_URI
        assert (settings.host, settings.port) == ("0.0.0.0", port(workload))
        assert settings.log_json is True
        if name == "p3":
            assert settings.limits.max_messages_post_size == 131072
        assert settings.workers == (2 if name == "p2" else 1)  # p2's own, else the default


def test_the_proxy_reads_the_catalog_and_its_tuning(
    monkeypatch: pytest.MonkeyPatch, example: Manifests
) -> None:
    workload = example.named("Deployment", f"{FULLNAME}-proxy")
    settings = start(monkeypatch, workload, "proxy", proxy_settings)
    assert settings.catalog_url == ",".join(EXAMPLE_VALUES["catalog"]["endpoints"])
    assert settings.key_prefix == EXAMPLE_VALUES["catalog"]["prefix"]
    assert (settings.host, settings.port) == ("0.0.0.0", port(workload))
    assert settings.placement_key is PlacementKey.PROJECT
    assert settings.workers == 2
    assert settings.cache_capacity == 200_000
    assert settings.log_json is True
    assert settings.auth is AuthMode.KEYSTONE
    assert settings.keystone_url == "http://keystone.openstack.svc:5000"
    assert (settings.keystone_username, settings.keystone_project) == ("marconi", "service")
    assert settings.keystone_password == STAND_IN_URI  # from the Secret
    assert (settings.limits.rate, settings.limits.burst, settings.limits.concurrency) == (
        200.0,
        400,
        64,
    )


def test_the_default_proxy_validates_tokens_and_has_no_limits(
    monkeypatch: pytest.MonkeyPatch, default: Manifests
) -> None:
    workload = default.named("Deployment", f"{FULLNAME}-proxy")
    settings = start(monkeypatch, workload, "proxy", proxy_settings)
    assert settings.auth is AuthMode.KEYSTONE
    assert not settings.insecure_noauth
    assert not settings.limits.enabled
    assert settings.workers == 1
    assert "noauth" not in str(container(workload)["env"])


def test_noauth_renders_only_when_named_insecure_and_then_starts_on_the_pod_address(
    monkeypatch: pytest.MonkeyPatch, helm: Helm
) -> None:
    sets = {"proxy.auth.mode": "noauth", "proxy.auth.insecureNoauth": "true"}
    workload = helm.template(**sets).named("Deployment", f"{FULLNAME}-proxy")
    settings = start(monkeypatch, workload, "proxy", proxy_settings)
    assert (settings.auth, settings.insecure_noauth, settings.host) == (
        AuthMode.NOAUTH,
        True,
        "0.0.0.0",
    )


def test_the_worker_serves_its_metrics_on_the_declared_port(
    monkeypatch: pytest.MonkeyPatch, example: Manifests
) -> None:
    workload = example.named("Deployment", f"{FULLNAME}-worker")
    settings = start(monkeypatch, workload, "worker", worker_settings)
    assert settings.catalog_url == ",".join(EXAMPLE_VALUES["catalog"]["endpoints"])
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", port(workload))
    assert settings.copy_rate == 2000.0
