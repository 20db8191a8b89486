"""Verify without reading the whole queue while it is frozen.

The queue's markers are cut into ranges of `RANGE` markers. While the source is still live, a
*baseline* compares every range on both partitions by its digest (count, and the sum of the
messages' fingerprints: `TransferStore.fingerprints`) and remembers each, as of a position of
each partition's change sequence. A range that differs is levelled (its messages copied again),
which stamps them on the target. Later, a refresh reads only what changed after those positions
on either partition (`TransferStore.changes`: writes and tombstones, each with its marker),
compares the ranges those touched again, and keeps the rest: a range that neither partition
wrote since it was found equal is still equal. Frozen, the same refresh is the verify: it
compares the touched ranges and adds every range's digest up into the whole queue's (count,
fingerprints of every id, marker, body, expiry and claim), and any difference is a divergence.

Claims are compared the same way, by id rather than by range: the baseline keeps the claims
found equal on both partitions, and a refresh (or the verify) compares again only the claims
either partition made, renewed or released since (`Changes.claims`, `Changes.released`). A claim
expires at the same instant on both, so the claims known equal stay equal until one is written.

The queue's record (metadata, marker counter) stays out of both and is compared whole at every
verify.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from migrate.copy import Copier
from migrate.errors import Diverged
from node.errors import ChangesLost
from node.models import Claim, QueueDigest
from node.storage.base import TransferStore
from node.storage.transfer import checksum

RANGE = 256  # markers per range
PAGE = 2000  # fingerprints per read
CHUNK = 64  # ranges compared at one pinned instant, when comparing everything
# A freeze starts only once a refresh of the baseline had to read at most this many ranges: the
# freeze's own verify then reads about as few. Claims compared count as ranges, `RANGE` a range.
FREEZE_RANGES = 8
ClaimPair = tuple[Claim | None, Claim | None]  # a claim on the source, and on the target


@dataclass(frozen=True, slots=True)
class RangeDigest:
    count: int
    total: int  # the sum of the fingerprints
    top: int  # the highest marker


@dataclass(slots=True)
class Baseline:
    source_at: int  # positions of the two change sequences the ranges are known as of
    target_at: int
    ranges: dict[int, RangeDigest] = field(default_factory=dict)  # equal on both; empty: absent
    dirty: set[int] = field(default_factory=set)  # levelled since, to compare again
    claims: dict[str, Claim] = field(default_factory=dict)  # equal on both, by id
    dirty_claims: set[str] = field(default_factory=set)  # levelled since, to compare again


@dataclass(frozen=True, slots=True)
class Touched:
    """What either partition wrote since the baseline."""

    ranges: set[int]
    claims: set[str]


def range_of(marker: int) -> int:
    return (marker - 1) // RANGE


def _bounds(runs: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous ranges as (after marker, up to marker) spans."""
    spans: list[tuple[int, int]] = []
    for r in sorted(set(runs)):
        after, upto = r * RANGE, (r + 1) * RANGE
        if spans and spans[-1][1] == after:
            spans[-1] = (spans[-1][0], upto)
        else:
            spans.append((after, upto))
    return spans


class Verifier:
    def __init__(
        self,
        copier: Copier,
        *,
        pinned: Callable[[], AbstractContextManager[None]] = nullcontext,
        source_name: str = "the source",
        target_name: str = "the target",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.copier = copier
        self.source: TransferStore = copier.source
        self.target: TransferStore = copier.target
        self.project = copier.project
        self.queue = copier.queue
        self._pinned = pinned
        self._names = (source_name, target_name)
        self._clock = clock
        self.baseline: Baseline | None = None

    async def refresh(self, source_at: int) -> int:
        """While the source is live: bring the baseline up to `source_at`, a position of the
        source that the target lacks nothing from before (the copier's cursor), levelling ranges
        that differ. Returns how many ranges had to be read."""
        if self.baseline is None:  # the target's changes count from the first baseline on
            await self.target.track(self.project, self.queue, True)
        target_at = await self.target.sequence(self.project, self.queue)
        touched = await self._touched()
        found = await self._compare(None if touched is None else touched.ranges)
        claims = await self._compare_claims(None if touched is None else touched.claims)
        baseline = self.baseline if touched is not None else None
        if baseline is None:
            baseline = Baseline(source_at, target_at)
        for r, (theirs, ours) in found.items():
            baseline.ranges.pop(r, None)
            baseline.dirty.discard(r)
            if theirs != ours:
                await self.copier.level(r * RANGE, (r + 1) * RANGE)
                baseline.dirty.add(r)
            elif theirs is not None:
                baseline.ranges[r] = theirs
        differ = [cid for cid, (src, dst) in claims.items() if src != dst]
        for cid, (src, _) in claims.items():
            baseline.claims.pop(cid, None)
            baseline.dirty_claims.discard(cid)
            if src is not None and cid not in differ:
                baseline.claims[cid] = src
        if differ:
            await self.copier.level_claims(differ)
            baseline.dirty_claims.update(differ)
        baseline.source_at, baseline.target_at = source_at, target_at
        self.baseline = baseline
        return len(found) + len(claims) // RANGE

    async def verify(self) -> QueueDigest:
        """Frozen: compare what changed since the baseline (everything, without one) and add
        the whole queue's digest up; raises `Diverged` when a range or a claim differs."""
        touched = await self._touched() if self.baseline is not None else None
        ranges_touched = None if touched is None else touched.ranges
        if ranges_touched is not None:
            # The top of the queue is read fresh, for an exact highest marker.
            counter = await self.source.export_queue(self.project, self.queue)
            tops = [r for r, d in self._known().items() if d.count]
            top = range_of(max(1, counter.counter if counter else 1))
            ranges_touched |= {max(tops, default=0), top}
        found = await self._compare(ranges_touched)
        ranges = self._known()
        for r, (theirs, ours) in sorted(found.items()):
            if theirs != ours:
                raise Diverged(self._differs(r, theirs, ours))
            ranges.pop(r, None)
            if theirs is not None:
                ranges[r] = theirs
        found_claims = await self._compare_claims(None if touched is None else touched.claims)
        claims = dict(self.baseline.claims) if touched is not None and self.baseline else {}
        for cid, (src, dst) in found_claims.items():
            if src != dst:
                source, target = self._names
                raise Diverged(
                    f"verify: {target} differs from {source} in claim {cid}:"
                    f" {_claim_state(dst)} instead of {_claim_state(src)}"
                )
            claims.pop(cid, None)
            if src is not None:
                claims[cid] = src
        now = self._clock()
        digests = ranges.values()
        return QueueDigest(
            count=sum(d.count for d in digests),
            max_marker=max((d.top for d in digests if d.count), default=0),
            checksum=checksum(sum(d.total for d in digests)),
            claim_ids=tuple(sorted(c.id for c in claims.values() if c.expires > now)),
        )

    def _known(self) -> dict[int, RangeDigest]:
        return dict(self.baseline.ranges) if self.baseline is not None else {}

    async def _touched(self) -> Touched | None:
        """What either partition wrote since the baseline; None when that cannot be told."""
        b = self.baseline
        if b is None:
            return None
        touched = Touched(set(b.dirty), set(b.dirty_claims))

        async def read(store: TransferStore, since: int) -> None:
            while True:
                page = await store.changes(self.project, self.queue, since=since, limit=PAGE)
                touched.ranges.update(range_of(m.marker) for m in page.messages)
                touched.ranges.update(range_of(r.marker) for r in page.removed)
                touched.claims.update(c.id for c in page.claims)
                touched.claims.update(page.released)
                if not page.more:
                    return
                since = page.upto
                await asyncio.sleep(0)

        try:  # both partitions at once: a freeze waits for the slower one only
            await asyncio.gather(read(self.source, b.source_at), read(self.target, b.target_at))
        except ChangesLost:
            return None
        return touched

    async def _compare_claims(self, ids: set[str] | None) -> dict[str, ClaimPair]:
        """The claims among `ids` (None: all) on the source and on the target, by id."""
        if ids is not None and not ids:
            return {}
        wanted = None if ids is None else sorted(ids)
        found: dict[str, ClaimPair] = {}
        with self._pinned():  # both read at one instant: nothing expires in between
            theirs, ours = await asyncio.gather(
                self.source.export_claims(self.project, self.queue, ids=wanted),
                self.target.export_claims(self.project, self.queue, ids=wanted),
            )
        for c in theirs:
            found[c.id] = (c, None)
        for c in ours:
            found[c.id] = (found.get(c.id, (None, None))[0], c)
        for cid in wanted or ():
            found.setdefault(cid, (None, None))
        return found

    async def _compare(
        self, touched: set[int] | None
    ) -> dict[int, tuple[RangeDigest | None, RangeDigest | None]]:
        """The digests of the `touched` ranges (None: all) on the source and on the target."""
        found: dict[int, tuple[RangeDigest | None, RangeDigest | None]] = {}
        spans = _bounds(touched) if touched is not None else None
        after = 0
        while True:
            if spans is not None:
                if not spans:
                    return found
                after, upto = spans.pop(0)
            else:
                # Everything, a chunk at a time (each read at one pinned instant), from the
                # next marker either partition holds.
                after = await self._next(after)
                if after < 0:
                    return found
                upto = after + CHUNK * RANGE
            with self._pinned():  # both read at one instant: nothing expires in between
                theirs, ours = await asyncio.gather(
                    self._digests(self.source, after, upto), self._digests(self.target, after, upto)
                )
            runs = set(theirs) | set(ours)
            if spans is not None:  # a touched range now empty on both sides is found too
                runs |= set(range(after // RANGE, upto // RANGE))
            for r in runs:
                found[r] = (theirs.get(r), ours.get(r))
            after = upto

    async def _next(self, after: int) -> int:
        """Where the range of the next marker above `after` on either partition starts; -1 when
        there is none."""
        tops = []
        for store in (self.source, self.target):
            page = await store.fingerprints(self.project, self.queue, after_marker=after, limit=1)
            tops += [marker for marker, _ in page]
        return range_of(min(tops)) * RANGE if tops else -1

    async def _digests(self, store: TransferStore, after: int, upto: int) -> dict[int, RangeDigest]:
        """Each range's digest from the live messages above `after`, up to `upto`."""
        sums: dict[int, list[int]] = {}
        while after < upto:
            limit = min(PAGE, upto - after)  # markers are unique: no more in the span than that
            page = await store.fingerprints(
                self.project, self.queue, after_marker=after, limit=limit
            )
            for marker, value in page:
                if marker > upto:
                    break
                d = sums.setdefault(range_of(marker), [0, 0, 0])
                d[0] += 1
                d[1] += value
                d[2] = marker
            if len(page) < limit:
                break
            after = page[-1][0]
            await asyncio.sleep(0)  # SQLite reads never suspend: let the loop run between pages
        return {r: RangeDigest(c, t, top) for r, (c, t, top) in sums.items()}

    def _differs(self, r: int, theirs: RangeDigest | None, ours: RangeDigest | None) -> str:
        source, target = self._names
        expected = theirs or RangeDigest(0, 0, 0)
        found = ours or RangeDigest(0, 0, 0)
        where = f"markers {r * RANGE + 1}-{(r + 1) * RANGE}"
        if expected.count != found.count:
            what = f"{found.count} messages instead of {expected.count}"
        elif expected.top != found.top:
            what = f"highest marker {found.top} instead of {expected.top}"
        else:
            what = "same counts, different contents (checksum)"
        return f"verify: {target} differs from {source} in {where}: {what}"


def _claim_state(claim: Claim | None) -> str:
    return "none" if claim is None else f"expiring at {claim.expires!r} (ttl {claim.ttl})"
