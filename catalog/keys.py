"""Every key the catalog writes, under one configurable prefix. Values are JSON objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "/marconi/"

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            object.__setattr__(self, "prefix", self.prefix + "/")

    # partitions/{name}
    @property
    def partitions(self) -> str:
        return f"{self.prefix}partitions/"

    def partition(self, name: str) -> str:
        return f"{self.partitions}{name}"

    # placements/{project}/{queue}; a v1 request without a project uses "_" as its project.
    @property
    def placements(self) -> str:
        return f"{self.prefix}placements/"

    def project_placements(self, project: str) -> str:
        return f"{self.placements}{project or '_'}/"

    def placement(self, project: str, queue: str) -> str:
        return f"{self.project_placements(project)}{queue}"

    def parse_placement(self, key: str) -> tuple[str, str]:
        project, _, queue = key[len(self.placements) :].partition("/")
        return ("" if project == "_" else project), queue

    # migrations/{id}
    @property
    def migrations(self) -> str:
        return f"{self.prefix}migrations/"

    def migration(self, migration_id: str) -> str:
        return f"{self.migrations}{migration_id}"

    # owners/{migration id}: the worker running that migration, bound to the worker's lease.
    # Not under migrations/, whose every key is a migration record.
    @property
    def owners(self) -> str:
        return f"{self.prefix}owners/"

    def owner(self, migration_id: str) -> str:
        return f"{self.owners}{migration_id}"

    # pins/{project}
    @property
    def pins(self) -> str:
        return f"{self.prefix}pins/"

    def pin(self, project: str) -> str:
        return f"{self.pins}{project or '_'}"

    def parse_pin(self, key: str) -> str:
        project = key[len(self.pins) :]
        return "" if project == "_" else project
