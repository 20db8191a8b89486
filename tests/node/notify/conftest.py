from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.node.notify.receivers import Mailbox, Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    m = Mailbox().start()
    try:
        yield m
    finally:
        m.stop()
