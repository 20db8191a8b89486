"""The chart under test: Helm run on it, and its manifests validated against the Kubernetes API
schemas that PyPI's kubernetes-validate ships (no network: the schemas are in the package)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "marconi"
EXAMPLE = CHART / "examples" / "three-partitions.yaml"
RELEASE = "queues"
NAMESPACE = "mq"
FULLNAME = f"{RELEASE}-marconi"  # the prefix of every object's name
EXAMPLE_VALUES: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
# The chart's oldest Kubernetes (Chart.yaml's kubeVersion) and the newest the schemas cover, as
# the Makefile's `chart` target checks them.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
# Custom resources: their schemas are not Kubernetes'; checked by the tests that make them.
CUSTOM_GROUPS = ("monitoring.coreos.com/",)
SCHEMAS = files("kubernetes_validate") / "kubernetes-json-schema"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def helm_binary() -> str | None:
    """`$HELM_BIN` (what the Makefile builds into ~/.cache/marconi), else `helm` on PATH."""
    path = os.environ.get("HELM_BIN") or shutil.which("helm")
    return path if path and os.access(path, os.X_OK) else None


class HelmFailed(Exception):
    pass


@dataclass(frozen=True)
class Helm:
    binary: str

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise HelmFailed(done.stderr.strip() or done.stdout.strip())
        return done.stdout

    def lint(self, *values: Path) -> str:
        return self.run("lint", "--strict", str(CHART), *_value_flags(values, {}))

    def template(self, *values: Path, **sets: str) -> Manifests:
        out = self.run(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            *_value_flags(values, sets),
        )
        return Manifests([doc for doc in yaml.load_all(out, Loader=LOADER) if doc])


def _value_flags(values: Sequence[Path], sets: dict[str, str]) -> list[str]:
    flags = [arg for path in values for arg in ("--values", str(path))]
    return flags + [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


@dataclass(frozen=True)
class Manifests:
    documents: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every pod template: (kind/name, pod spec)."""
        for doc in self.documents:
            if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    """The one container of a workload."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


# --- schemas ------------------------------------------------------------------------------------


class SchemaMissing(Exception):
    pass


def is_custom(document: dict[str, Any]) -> bool:
    return str(document["apiVersion"]).startswith(CUSTOM_GROUPS)


def validate(document: dict[str, Any], kube_version: str) -> None:
    """Raise `jsonschema.ValidationError` unless `document` is valid for that Kubernetes version,
    strictly (no unknown fields); `SchemaMissing` for a kind that version does not have."""
    _validator(kube_version, document["kind"], document["apiVersion"]).validate(document)


@functools.cache
def _validator(kube_version: str, kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    # The package's layout: v<version>-local-strict/<kind>-<group without domain>-<version>.json,
    # each with an "$id", and "$ref"s into _definitions.json beside it (by its "$id").
    folder = SCHEMAS / f"v{kube_version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = folder / f"{kind.lower()}-{group}.json"
    if not schema_file.is_file():
        raise SchemaMissing(f"no schema for {api_version} {kind} in Kubernetes {kube_version}")
    schema = json.loads(schema_file.read_text())
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions(kube_version) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(kube_version: str) -> Resource[Any]:
    text = (SCHEMAS / f"v{kube_version}-local-strict" / "_definitions.json").read_text()
    return Resource.from_contents(json.loads(text))
