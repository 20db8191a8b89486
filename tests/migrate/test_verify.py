"""The verifier over two SQLite partitions: a baseline levels what differs while the source is
live; frozen, only the ranges changed since are read, and the digest still covers the queue."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrate.copy import Copier
from migrate.errors import Diverged
from migrate.verify import RANGE, Verifier
from node.models import NewMessage
from node.storage import open_storage
from node.storage.base import Storage
from tests.conftest import FakeClock

P, Q = "tenant", "orders"
MESSAGES = 3 * RANGE + 10  # four ranges


@dataclass
class Pair:
    source: Storage
    target: Storage
    copier: Copier
    verifier: Verifier

    async def copy(self) -> None:
        await self.copier.copy_queue()
        await self.copier.track(True, target=False)
        after = 0
        while (batch := await self.copier.copy_batch(after, 100)).read:
            after = batch.marker
        await self.copier.catch_up()


@pytest.fixture
async def pair(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Pair]:
    source = await open_storage(f"sqlite:///{tmp_path}/p1.db", clock)
    target = await open_storage(f"sqlite:///{tmp_path}/p2.db", clock)
    await source.queues.create(P, Q, None)
    for start in range(0, MESSAGES, 50):
        bodies = [NewMessage({"n": n}, 600) for n in range(start, min(start + 50, MESSAGES))]
        await source.messages.post(P, Q, bodies, "c")
    await source.claims.create(P, Q, ttl=300, grace=60, limit=3)

    async def no_wait(seconds: float) -> None:
        return None

    copier = Copier(P, Q, source.transfer, target.transfer, 100, settle=0.0, sleep=no_wait)
    try:
        verifier = Verifier(copier, source_name="p1", target_name="p2", clock=clock)
        yield Pair(source, target, copier, verifier)
    finally:
        await source.close()
        await target.close()


async def reads(pair: Pair) -> list[int]:
    """Count the fingerprint reads from here on (one per page)."""
    calls: list[int] = []
    for store in (pair.source.transfer, pair.target.transfer):
        read = store.fingerprints

        async def counted(*args: object, read=read, **kwargs: object) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
            calls.append(1)
            return await read(*args, **kwargs)  # type: ignore[arg-type]

        store.fingerprints = counted  # type: ignore[method-assign]
    return calls


async def test_only_changed_ranges_are_read_and_the_digest_is_the_whole_queues(
    pair: Pair,
) -> None:
    await pair.copy()
    assert pair.copier.cursor is not None
    assert await pair.verifier.refresh(pair.copier.cursor) == 4  # the first: every range
    assert await pair.verifier.refresh(pair.copier.cursor) == 0  # nothing changed since
    # One change in the second range, on the source; the catch-up brings it over.
    exported = await pair.source.transfer.export_messages(P, Q, after_marker=RANGE, limit=1)
    await pair.source.messages.delete(P, Q, exported[0].id, None)
    await pair.copier.catch_up()
    await pair.source.transfer.freeze(P, Q, "frozen")
    calls = await reads(pair)
    digest = await pair.verifier.verify()
    assert digest == await pair.source.transfer.digest(P, Q)  # the whole queue's
    assert digest.count == MESSAGES - 1
    assert len(calls) <= 2 * 3  # the changed range and the top ones, on each side


async def test_a_baseline_levels_a_range_the_copy_got_wrong(pair: Pair) -> None:
    await pair.copy()
    # A message the copy "missed", behind the change tracking's back.
    [lost] = await pair.target.transfer.export_messages(P, Q, after_marker=2 * RANGE, limit=1)
    pair.target.conn.execute("DELETE FROM messages WHERE id = ?", (lost.id,))
    assert pair.copier.cursor is not None
    assert await pair.verifier.refresh(pair.copier.cursor) == 4
    assert pair.verifier.baseline is not None and pair.verifier.baseline.dirty == {2}
    assert await pair.verifier.refresh(pair.copier.cursor) == 1  # compared again: equal now
    await pair.source.transfer.freeze(P, Q, "frozen")
    assert await pair.verifier.verify() == await pair.source.transfer.digest(P, Q)


@pytest.mark.parametrize("tamper", ["body", "delete"])
async def test_the_target_changed_after_the_baseline_is_caught(pair: Pair, tamper: str) -> None:
    await pair.copy()
    assert pair.copier.cursor is not None
    await pair.verifier.refresh(pair.copier.cursor)
    await pair.source.transfer.freeze(P, Q, "frozen")
    [one] = await pair.target.transfer.export_messages(P, Q, after_marker=RANGE + 5, limit=1)
    if tamper == "body":
        changed = dataclasses.replace(one, body={"tampered": True})
        await pair.target.transfer.import_messages(P, Q, [changed])
        expected = "same counts, different contents (checksum)"
    else:
        await pair.target.transfer.delete_messages(P, Q, [one.id])
        expected = f"{RANGE - 1} messages instead of {RANGE}"
    with pytest.raises(Diverged) as diverged:
        await pair.verifier.verify()
    assert str(diverged.value) == (
        f"verify: p2 differs from p1 in markers {RANGE + 1}-{2 * RANGE}: {expected}"
    )


async def test_claims_that_differ_are_a_divergence(pair: Pair) -> None:
    await pair.copy()
    assert pair.copier.cursor is not None
    await pair.verifier.refresh(pair.copier.cursor)
    [claim] = await pair.target.transfer.export_claims(P, Q)
    await pair.target.transfer.delete_claims(P, Q, [claim.id])
    # Told by the target's changes since the baseline: no claim is read that did not change.
    with pytest.raises(Diverged, match=f"p2 differs from p1 in claim {claim.id}: none instead"):
        await pair.verifier.verify()
