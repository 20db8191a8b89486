"""What every handler is built with: the partition's storage, the limits and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node.notify.confirm import Signer
from node.storage.base import Storage
from wire.limits import ApiLimits


@dataclass(frozen=True, slots=True)
class Deps:
    storage: Storage
    limits: ApiLimits = field(default_factory=ApiLimits)
    clock: Callable[[], float] = time.time
    partition: str = "default"
    # Set when subscriptions must be confirmed (require_confirmation, and a signed-URL key to
    # sign the confirm link with): new webhook subscriptions are sent a confirmation request.
    confirmations: Signer | None = None
