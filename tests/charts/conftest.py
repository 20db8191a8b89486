"""Helm for the chart's tests: skipped only where no helm binary is found (`make test` builds
one from the Go module proxy into ~/.cache/marconi and exports HELM_BIN)."""

from __future__ import annotations

import pytest

from tests.charts.chart import EXAMPLE, Helm, Manifests, helm_binary


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = helm_binary()
    if binary is None:
        pytest.skip("no helm binary: run `make helm` (or `make test`), or set HELM_BIN")
    return Helm(binary)


@pytest.fixture(scope="session")
def default(helm: Helm) -> Manifests:
    """The chart rendered with its default values."""
    return helm.template()


@pytest.fixture(scope="session")
def example(helm: Helm) -> Manifests:
    """The chart rendered with examples/three-partitions.yaml."""
    return helm.template(EXAMPLE)


@pytest.fixture(scope="session")
def bundled(helm: Helm) -> Manifests:
    """The example with the bundled three-member etcd instead of the given endpoints."""
    return helm.template(EXAMPLE, **{"etcd.enabled": "true", "etcd.replicas": "3"})
