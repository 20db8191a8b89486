"""A catch-up whose lag stops shrinking: the machine escalates to a freeze sized to the remaining
work, or says so on the record and fails, instead of running rounds for ever. The steps are a
stand-in whose catch-up always has as much to do as the freeze threshold refuses."""

from __future__ import annotations

import asyncio

from catalog.migrations import Migration, Phase
from catalog.records import Placement
from migrate.convergence import Convergence, Round
from migrate.copy import Batch
from migrate.journal import MemoryJournal
from migrate.machine import Hooks, Machine
from migrate.settings import WorkerSettings
from node.models import QueueDigest

SETTINGS = WorkerSettings(
    freeze_lag=50, catch_up_pause=0.0, stall_rounds=5, stall_seconds=60.0, stall_limit=0.3
)


class Busy:
    """Steps of a queue so busy that every round absorbs 200 records while 200 more arrive."""

    def __init__(self, refresh_seconds: float = 0.0) -> None:
        self.refresh_seconds = refresh_seconds
        self.rounds = 0
        self.frozen = False

    async def prepare_target(self) -> None: ...
    async def copy_queue(self) -> None: ...

    async def copy_batch(self, after_marker: int, limit: int) -> Batch:
        return Batch(0, 0, after_marker)

    async def catch_up(self) -> int:
        self.rounds += 1
        return 200

    def arrived(self) -> int:
        return 200

    async def verify_baseline(self) -> int:
        await asyncio.sleep(self.refresh_seconds)
        return 1

    async def freeze_source(self, lasts: float) -> None:
        self.frozen = True

    async def keep_fence(self, lasts: float) -> bool:
        return True

    async def verify(self) -> QueueDigest:
        return QueueDigest(0, 0, "0" * 16, ())

    async def switch_placement(self) -> Placement:
        return Placement("p", "q", "p2")

    async def mark_moved(self) -> None: ...
    async def unfreeze_source(self) -> None:
        self.frozen = False

    async def stop_tracking(self) -> None: ...
    async def adopt_stragglers(self, verified_marker: int) -> int:
        return 0

    async def purge_source(self, limit: int) -> int:
        return 0

    async def remove_partial_copy(self, limit: int) -> int:
        return 0


class Reached(Exception):
    pass


async def run_until(steps: Busy, *phases: Phase) -> Migration:
    """Run from CATCHING_UP until a phase among `phases` is reached (or a terminal one)."""
    start = Migration("m1", "p", "q", "p1", "p2", phase=Phase.CATCHING_UP)

    async def reached(m: Migration) -> None:
        if m.phase in phases:
            raise Reached

    journal = MemoryJournal(start)
    machine = Machine(journal, steps, SETTINGS, hooks=Hooks(reached=reached))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            await machine.run()
    except Reached:
        pass
    return journal.migration


async def test_a_lag_that_stops_shrinking_gets_a_freeze_sized_to_the_remaining_work() -> None:
    steps = Busy()
    m = await run_until(steps, Phase.FROZEN)
    assert m.phase is Phase.FROZEN and m.error is None
    # The lag never went under the threshold: after `stall_rounds` rounds without a new low
    # (the first round sets it), the freeze came anyway.
    assert steps.rounds == 1 + SETTINGS.stall_rounds
    assert m.progress.rounds == steps.rounds
    assert (m.progress.lag, m.progress.arrived) == (200, 200)
    assert m.progress.stalled is not None
    assert m.progress.stalled.startswith("the lag stopped shrinking at 200 records over 6 rounds")
    assert "frozen for the remaining work" in m.progress.stalled


async def test_a_freeze_that_would_not_fit_is_reported_then_the_move_fails() -> None:
    # A baseline refresh that takes most of the freeze limit: a freeze would not fit.
    steps = Busy(refresh_seconds=0.8 * SETTINGS.freeze_limit)
    m = await run_until(steps)
    assert m.phase is Phase.FAILED
    assert m.error is not None and m.error.startswith("the catch-up did not converge")
    assert "still catching up" in m.error and "over 60% of the 0.5s limit" in m.error
    assert not steps.frozen


def test_convergence_says_stalled_after_rounds_or_seconds_without_a_new_low() -> None:
    now = [0.0]
    watch = Convergence(rounds=3, seconds=10.0, clock=lambda: now[0])
    for lag in (100, 80, 60):  # shrinking
        watch.note(Round(lag, 0.1))
        assert not watch.stalled()
    for lag in (70, 65, 61):  # no new low for three rounds
        watch.note(Round(lag, 0.1))
    assert watch.stalled() and watch.best == 60
    now[0] += 2.0
    assert watch.stalled_for == 2.0
    watch.note(Round(10, 0.1))  # a new low: converging again
    assert not watch.stalled() and watch.stalled_for == 0.0
    now[0] += 10.0  # ten seconds without a round
    assert watch.stalled()
    assert Round(50, 0.5).rate == 100.0
