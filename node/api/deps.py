"""What every handler is built with: the partition's storage, the limits and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node.limits import Limits
from node.storage.base import Storage


@dataclass(frozen=True, slots=True)
class Deps:
    storage: Storage
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.time
    partition: str = "default"
