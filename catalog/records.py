"""The catalog's records: frozen dataclasses with their JSON form (readable with etcdctl)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

# The storage schemes a partition may name (the node's drivers; migration workers open them).
STORAGE_SCHEMES = frozenset({"sqlite", "mongodb", "postgresql"})
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


class PartitionState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"  # serves its queues, gets no new ones, is being emptied
    READ_ONLY = "read-only"  # serves its queues, gets no new ones


class PlacementState(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  # a migration's freeze: writes wait until the switch


def _host_port(hostport: str) -> bool:
    """Whether `hostport` is `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 one,
    and a port from 1 to 65535."""
    if hostport.startswith("["):
        address, _, rest = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return False
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            return False
    else:
        host, colon, port_text = hostport.partition(":")
        if not _HOSTNAME.match(host):
            return False
        port = port_text if colon else None
    return port is None or (port.isascii() and port.isdigit() and 0 < int(port) < 65536)


def node_url_problem(url: Any) -> str | None:
    """What is wrong with `url` as a partition's node address (`http(s)://host[:port]`), or None.

    The proxy calls these addresses (health checks every few seconds, forwarded requests): no
    credentials, path, query or fragment that could aim it at anything but a node's root."""
    if not isinstance(url, str):
        return "a node address must be a string"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"{url!r}: a node address is http:// or https://"
    if "@" in parts.netloc or not _host_port(parts.netloc):
        return f"{url!r}: a node address names host[:port] only (no credentials)"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{url!r}: a node address has no path, query or fragment"
    return None


def storage_uri_problem(uri: Any) -> str | None:
    """What is wrong with `uri` as a partition's storage URI, or None: `sqlite:///path`, or
    `mongodb://` / `postgresql://` with hosts (`host[:port]`, comma-separated) and a database."""
    if not isinstance(uri, str):
        return "a storage URI must be a string"
    parts = urlsplit(uri)
    if parts.scheme not in STORAGE_SCHEMES:
        return f"a storage URI's scheme is one of: {', '.join(sorted(STORAGE_SCHEMES))}"
    if parts.fragment or any(ord(c) < 32 for c in uri):
        return "a storage URI has no fragment and no control characters"
    if parts.scheme == "sqlite":
        if parts.netloc or len(parts.path) < 2 or parts.query:
            return "a SQLite storage URI is sqlite:///path/to/file.db"
        return None
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts or not all(_host_port(h) for h in hosts.split(",")):
        return f"a {parts.scheme} storage URI names host[:port] (comma-separated)"
    return None


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    nodes: tuple[str, ...]
    weight: int = 1
    state: PartitionState = PartitionState.ACTIVE
    # The storage URI (sqlite:///..., mongodb://...) that migration workers open directly.
    storage: str = ""

    @property
    def accepts_new_queues(self) -> bool:
        return self.state is PartitionState.ACTIVE and self.weight > 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "nodes": list(self.nodes),
                "weight": self.weight,
                "state": self.state.value,
                "storage": self.storage,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Partition:
        doc = json.loads(raw)
        return cls(
            name=doc["name"],
            nodes=tuple(doc.get("nodes", ())),
            weight=int(doc.get("weight", 1)),
            state=PartitionState(doc.get("state", "active")),
            storage=doc.get("storage", ""),
        )


@dataclass(frozen=True, slots=True)
class Placement:
    project: str
    queue: str
    partition: str
    epoch: int = 1
    state: PlacementState = PlacementState.ACTIVE
    migration: str | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "project": self.project,
            "queue": self.queue,
            "partition": self.partition,
            "epoch": self.epoch,
            "state": self.state.value,
        }
        if self.migration:
            doc["migration"] = self.migration
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Placement:
        doc = json.loads(raw)
        return cls(
            project=doc["project"],
            queue=doc["queue"],
            partition=doc["partition"],
            epoch=int(doc.get("epoch", 1)),
            state=PlacementState(doc.get("state", "active")),
            migration=doc.get("migration"),
        )


@dataclass(frozen=True, slots=True)
class Pin:
    """Every new queue of `project` goes to `partition`, whatever the policy says."""

    project: str
    partition: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Pin:
        doc = json.loads(raw)
        return cls(project=doc["project"], partition=doc["partition"])


@dataclass(frozen=True, slots=True)
class Versioned:
    """A raw catalog value with the etcd revisions that compare-and-swap writes need."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch: `value` is None for a delete."""

    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    items: list[Versioned] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a prefix read at `revision`; `more` when keys follow the last one."""

    revision: int
    items: list[Versioned] = field(default_factory=list)
    more: bool = False


@dataclass(frozen=True, slots=True)
class Lookup:
    """One key's value (None: absent) and the store revision it was read at."""

    value: Versioned | None
    revision: int
