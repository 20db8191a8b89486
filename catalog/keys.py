"""Every key the catalog writes, under one configurable prefix. Values are JSON objects.

Projects and queues are key segments: a project id may hold any character, so each segment is
escaped (`%` as `%25`, `/` as `%2F`; nothing else changes, so usual names read as themselves
in `etcdctl`), and "no project" (a v1 request without `X-Project-ID`) is the segment `%`, which
no escaped name can be. Layout 1 (before this release) wrote segments raw and "no project" as
`_`, shared with the project `_`; `Catalog.upgrade_layout` moves what it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_PROJECT = "%"  # a lone "%" starts no escape, so no escaped project id is this segment
LEGACY_NO_PROJECT = "_"  # layout 1's segment for "no project", shared with the project "_"
LAYOUT = 2


def escape(name: str) -> str:
    """`name` as one key segment: `%` and `/` escaped, so segments split on `/` unambiguously."""
    if "%" not in name and "/" not in name:
        return name
    return name.replace("%", "%25").replace("/", "%2F")


def unescape(segment: str) -> str:
    if "%" not in segment:
        return segment
    return segment.replace("%2F", "/").replace("%25", "%")


def project_segment(project: str) -> str:
    return escape(project) if project else NO_PROJECT


def parse_project(segment: str) -> str:
    return "" if segment == NO_PROJECT else unescape(segment)


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

    # layout: {"placements": LAYOUT} once every key of an older layout has been moved.
    @property
    def layout(self) -> str:
        return f"{self.prefix}layout"

    # placements/{project}/{queue}, both segments escaped; "no project" is NO_PROJECT.
    @property
    def placements(self) -> str:
        return f"{self.prefix}placements/"

    def project_placements(self, project: str) -> str:
        return f"{self.placements}{project_segment(project)}/"

    def placement(self, project: str, queue: str) -> str:
        return f"{self.project_placements(project)}{escape(queue)}"

    def parse_placement(self, key: str) -> tuple[str, str]:
        project, _, queue = key[len(self.placements) :].partition("/")
        return parse_project(project), unescape(queue)

    @property
    def legacy_no_project_placements(self) -> str:
        """Where layout 1 put the placements of "no project" (and of the project `_`)."""
        return f"{self.placements}{LEGACY_NO_PROJECT}/"

    # migrations/{id}
    @property
    def migrations(self) -> str:
        return f"{self.prefix}migrations/"

    def migration(self, migration_id: str) -> str:
        return f"{self.migrations}{migration_id}"

    # owners/{migration id}: the worker running that migration, bound to the worker's lease;
    # owners/dead-letters.{partition}: the worker moving that partition's dead letters.
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
        return f"{self.pins}{project_segment(project)}"

    def parse_pin(self, key: str) -> str:
        return parse_project(key[len(self.pins) :])
