"""What every handler is built with: the partition's storage, the limits, a clock and the
signed URLs' secret and the message cipher."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node.encryption import MessageCipher
from node.notify.confirm import Signer
from node.storage.base import Storage
from wire.limits import ApiLimits


@dataclass(frozen=True, slots=True)
class Deps:
    storage: Storage
    limits: ApiLimits = field(default_factory=ApiLimits)
    clock: Callable[[], float] = time.time
    partition: str = "default"
    # Zaqar's `[signed_url] secret_key`: signs the share route's URLs and checks them; None
    # (unset) answers every share and every signed request as Zaqar does without one.
    signed_url_key: str | None = field(default=None, repr=False)
    cipher: MessageCipher | None = None  # None: no key, so no queue may encrypt its messages
    # Set when subscriptions must be confirmed (require_confirmation, and a signed-URL key to
    # sign the confirm link with): new webhook subscriptions are sent a confirmation request.
    confirmations: Signer | None = None
