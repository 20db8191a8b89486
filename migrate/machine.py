"""The migration state machine: each phase is saved to the journal before it is acted on.

    INIT ─▶ COPYING ─▶ CATCHING_UP ⇄ FROZEN ─▶ SWITCHED ─▶ CLEANUP ─▶ DONE
      └──────────┴───────────┴─────────┴──▶ CANCELLED, FAILED      (before the switch only)

CATCHING_UP follows the source's changes round after round; once a round had little to do, the
whole queue is compared range by range while it is still live (`verify_baseline`), and again
each round for what changed since, until that too is little: only then does the freeze start,
and its verify compares only what changed after the last of those. On a queue so busy that a
round never has little to do, the lag stops shrinking (`migrate.convergence`): the machine then
freezes anyway when a freeze sized to the remaining work fits within its limit, and otherwise
says so on the record (`progress.stalled`) and fails once that has lasted `stall_limit`.

A machine resumes from whatever record it is given: a worker that died is replaced by one that
runs the same phase again (its steps are idempotent). A freeze it finds already under way was
started by a worker that is gone, so it has outlived its limit: it is aborted. A failure is saved
as `error` on the record first, then cleaned up (source unfrozen, copy removed), then FAILED; a
cancel likewise goes from `cancel_requested` to CANCELLED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from catalog.migrations import Migration, Phase, Progress
from ground.logs import get_logger
from migrate import metrics
from migrate.convergence import Convergence, Round
from migrate.errors import CancelArrived, Diverged, FenceLeaked, Unmovable
from migrate.journal import Journal
from migrate.settings import WorkerSettings
from migrate.steps import POINT_OF_NO_RETURN, Steps
from migrate.verify import FREEZE_RANGES
from node.errors import TransferConflict

log = get_logger("migrate")
Hook = Callable[[Migration], Awaitable[None]]
PROGRESS_EVERY = 0.5  # seconds between saves of the bulk copy's progress
# An escalated freeze starts only if the work it must do is expected to take at most this share
# of the freeze limit: the rest is margin for a round that absorbs more than the last one did.
FREEZE_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class Hooks:
    """Test seams, awaited at fixed points of a run."""

    reached: Hook | None = None  # a phase is about to be acted on (it is saved already)
    before_verify: Hook | None = None  # frozen and caught up, verify next


NO_HOOKS = Hooks()


class Machine:
    def __init__(
        self,
        journal: Journal,
        steps: Steps,
        settings: WorkerSettings,
        *,
        hooks: Hooks = NO_HOOKS,
        guard: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        logger: Any = log,
    ) -> None:
        self.journal = journal
        self.steps = steps
        self.settings = settings
        self.hooks = hooks
        self.guard = guard  # raises `OwnershipLost` once this worker may no longer act
        self.clock = clock
        self.sleep = sleep
        self.log = logger
        self._froze_at: float | None = None  # monotonic time of this run's own freeze
        self._refreeze_at = 0.0  # monotonic time before which no new freeze starts

    @property
    def migration(self) -> Migration:
        return self.journal.migration

    async def run(self) -> Migration:
        """Drive the migration to a terminal phase; return its final record."""
        while not (m := self.migration).phase.terminal:
            self.guard()
            if self.hooks.reached is not None:
                await self.hooks.reached(m)
            try:
                if m.error is not None and m.phase.cancellable:
                    await self._fail_cleanly()
                elif m.cancel_requested and m.phase.cancellable:
                    await self._cancel()
                else:
                    await PHASES[m.phase](self)
            except CancelArrived:
                continue  # the journal now holds the cancel request: the loop honours it
            except (Unmovable, Diverged, TransferConflict) as exc:
                if not self.migration.phase.cancellable or self.migration.error is not None:
                    raise  # past the switch, or while failing: the runner retries and logs
                await self.journal.save(dataclasses.replace(self.migration, error=str(exc)))
        return self.migration

    # --- phases ----------------------------------------------------------------------------------

    async def _init(self) -> None:
        await self.steps.prepare_target()
        await self._advance(Phase.COPYING)

    async def _copying(self) -> None:
        await self.steps.copy_queue()
        pace = Pace(self.settings.copy_rate, sleep=self.sleep)
        progress = self.migration.progress
        saved = time.monotonic()
        while not self.migration.cancel_requested:
            self.guard()
            batch = await self.steps.copy_batch(progress.copy_marker, self.settings.batch)
            if batch.read:
                metrics.MESSAGES_COPIED.inc(batch.copied)
                progress = _progress(
                    progress, copied=progress.copied + batch.copied, copy_marker=batch.marker
                )
                # Saved now and then, not after every batch: a worker that resumes copies the
                # batches since again (imports are idempotent), and etcd is spared a write each.
                if time.monotonic() - saved >= PROGRESS_EVERY:
                    await self.journal.save(dataclasses.replace(self.migration, progress=progress))
                    saved = time.monotonic()
                await pace.wait(batch.read)
            if batch.read < self.settings.batch:
                await self._advance(Phase.CATCHING_UP, progress=progress)
                return
        await self.journal.save(dataclasses.replace(self.migration, progress=progress))

    async def _catching_up(self) -> None:
        await self.steps.unfreeze_source()  # an aborted freeze, whose worker died before this
        s = self.settings
        watch = Convergence(s.stall_rounds, s.stall_seconds)
        while not self.migration.cancel_requested:
            self.guard()
            started = time.monotonic()
            lag = await self.steps.catch_up()
            done = Round(lag, time.monotonic() - started)
            watch.note(done)
            stalled = watch.stalled()
            progress = _progress(
                self.migration.progress,
                lag=lag,
                rounds=self.migration.progress.rounds + 1,
                arrived=self.steps.arrived(),
                rate=round(done.rate, 1),
                stalled=self.migration.progress.stalled if stalled else None,  # converging again
            )
            if time.monotonic() >= self._refreeze_at:
                if lag <= s.freeze_lag:
                    read = await self.steps.verify_baseline()
                    if read <= FREEZE_RANGES:
                        await self._freeze(progress)
                        return
                if stalled:
                    progress, fits = await self._escalate(watch, done, progress)
                    if fits:
                        await self._freeze(progress)
                        return
                    if watch.stalled_for >= s.stall_limit:
                        error = f"the catch-up did not converge: {progress.stalled}"
                        await self.journal.save(
                            dataclasses.replace(self.migration, progress=progress, error=error)
                        )
                        return
            await self.journal.save(dataclasses.replace(self.migration, progress=progress))
            await self.sleep(s.catch_up_pause)

    async def _escalate(
        self, watch: Convergence, last: Round, progress: Progress
    ) -> tuple[Progress, bool]:
        """The lag stopped shrinking: freeze anyway if a freeze sized to the remaining work fits
        well within the limit. A freeze runs one catch-up and one verify, which read what the
        last round and a baseline refresh now read; both are timed here."""
        started = time.monotonic()
        await self.steps.verify_baseline()
        needed = last.seconds + (time.monotonic() - started) + self.settings.settle
        limit = self.settings.freeze_limit
        stuck = f"the lag stopped shrinking at {watch.best} records over {watch.rounds} rounds"
        fits = needed <= FREEZE_SHARE * limit
        if fits:
            why = f"{stuck}: frozen for the remaining work (about {needed * 1000:.0f} ms)"
        else:
            why = (
                f"{stuck}: a freeze would take about {needed * 1000:.0f} ms, over"
                f" {FREEZE_SHARE:.0%} of the {limit:g}s limit; still catching up"
            )
        if why != progress.stalled:
            self.log.warning("catch_up_stalled", migration=self.migration.id, reason=why)
        return _progress(progress, stalled=why), fits

    async def _freeze(self, progress: Progress) -> None:
        await self._advance(Phase.FROZEN, progress=progress)
        self._froze_at = time.monotonic()

    async def _frozen(self) -> None:
        started = self._froze_at
        if started is None:
            # Saved FROZEN by a worker that is gone: however far it got, its freeze has lasted
            # as long as the takeover did, which is past any sane limit.
            await self._abort_freeze("the worker that froze it stopped", 0.0)
            return
        # The fence lifts itself shortly after this freeze's limit: a worker that vanishes
        # mid-freeze (hung, partitioned away, killed) holds the queue's writes no longer.
        await self.steps.freeze_source(self.settings.freeze_limit + self.settings.fence_grace)
        try:
            async with asyncio.timeout(self.settings.freeze_limit):
                await self.sleep(self.settings.settle)  # writes that passed the fence land now
                await self.steps.catch_up()
                if self.hooks.before_verify is not None:
                    await self.hooks.before_verify(self.migration)
                digest = await self.steps.verify()
        except TimeoutError:
            digest = None
        except FenceLeaked as exc:
            await self._abort_freeze(str(exc), time.monotonic() - started)
            return
        held = time.monotonic() - started
        if digest is None or held > self.settings.freeze_limit:
            await self._abort_freeze(f"it lasted over {self.settings.freeze_limit:g}s", held)
            return
        progress = _progress(self.migration.progress, verified_marker=digest.max_marker)
        self.guard()
        # Why a fence that lifts itself never lets two writers exist. The source refuses writes
        # while its fence is in force; the target takes none until the placement names it, which
        # only the switch's compare-and-swap does, after the point of no return. `keep_fence`
        # extends the fence only if it is still in force (atomically, by the source's clock):
        # True proves the source took no write since `freeze_source`, so what verify compared
        # is the queue, and the fence now lasts `switch_fence` more seconds, within which the
        # switch is made (a worker whose lease lapses stops acting: `guard`). Had it lapsed,
        # writes may have landed after verify: the freeze is aborted, nothing switched. A worker
        # that resumes SWITCHED checks the same way and freezes, catches up and verifies again
        # if the fence lapsed before the switch (`_switched`).
        if not await self.steps.keep_fence(self.settings.switch_fence):
            held = time.monotonic() - started
            await self._abort_freeze("the fence lifted itself before the switch", held)
            return
        # THE POINT OF NO RETURN: from this save on, the switch happens (a resumed SWITCHED
        # switches too), and a cancel is refused.
        await self._advance(POINT_OF_NO_RETURN, progress=progress)

    async def _switched(self) -> None:
        if self.migration.progress.reverify or not await self.steps.keep_fence(
            self.settings.switch_fence
        ):
            await self._reverify()
        self.guard()
        await self.steps.switch_placement()
        await self.steps.mark_moved()
        progress = self.migration.progress
        if self._froze_at is not None:  # this run froze it: the freeze ends with the switch
            held = time.monotonic() - self._froze_at
            metrics.FREEZE_SECONDS.labels("switched").observe(held)
            progress = _progress(progress, freeze_ms=round(held * 1000, 1))
            self._froze_at = None
        await self.steps.stop_tracking()
        await self._advance(Phase.CLEANUP, progress=progress)

    async def _reverify(self) -> None:
        """Resumed after the fence lifted itself (the worker that froze it vanished past its
        deadline): the source may have taken writes since verify, and it still owns the queue.
        Past the point of no return the move ends on the target all the same: freeze again,
        catch up and verify until it passes, then switch. `reverify` is saved first, so that a
        worker dying in here leaves the next one to do it again rather than trust the new
        fence."""
        m = self.migration
        self.log.warning("fence_lapsed_before_switch", migration=m.id)
        if not m.progress.reverify:
            await self.journal.save(
                dataclasses.replace(m, progress=_progress(m.progress, reverify=True))
            )
        await self.steps.freeze_source(self.settings.switch_fence)
        for attempt in range(1, self.settings.freeze_attempts + 1):
            self.guard()
            await self.sleep(self.settings.settle)
            await self.steps.catch_up()
            try:
                digest = await self.steps.verify()
            except (FenceLeaked, Diverged) as exc:  # writes still landing: catch up again
                if attempt == self.settings.freeze_attempts:
                    raise
                self.log.warning("reverify_failed", migration=m.id, reason=str(exc))
                continue
            progress = _progress(
                self.migration.progress, reverify=False, verified_marker=digest.max_marker
            )
            await self.journal.save(dataclasses.replace(self.migration, progress=progress))
            return

    async def _cleanup(self) -> None:
        await self.steps.mark_moved()  # a resumed cleanup: the switch's last step again
        await self.steps.move_outbox()  # the notifications owed, from the fenced source
        waited = self.migration.updated + self.settings.purge_grace - self.clock()
        if waited > 0:
            await self.sleep(waited)
        self.guard()
        progress = self.migration.progress
        if progress.adopted is None:
            try:
                adopted = await self.steps.adopt_stragglers(progress.verified_marker)
            except TransferConflict as exc:
                # Only a store whose fence leaks can get here; the source keeps its copy.
                error = f"messages landed on the source after verify, not purged: {exc}"
                await self.journal.save(dataclasses.replace(self.migration, error=error))
                await self._advance(Phase.DONE)
                return
            if adopted:
                self.log.warning(
                    "stragglers_adopted", migration=self.migration.id, messages=adopted
                )
            progress = _progress(progress, adopted=adopted)
            await self.journal.save(dataclasses.replace(self.migration, progress=progress))
        pace = Pace(self.settings.purge_rate, sleep=self.sleep)
        while gone := await self.steps.purge_source(self.settings.batch):
            metrics.RECORDS_PURGED.inc(gone)
            progress = _progress(self.migration.progress, purged=progress.purged + gone)
            await self.journal.save(dataclasses.replace(self.migration, progress=progress))
            await pace.wait(gone)
            self.guard()
        await self._advance(Phase.DONE)

    # --- leaving before the switch ---------------------------------------------------------------

    async def _abort_freeze(self, why: str, held: float) -> None:
        """Back to CATCHING_UP, which unfreezes first; FAILED after too many attempts. The next
        freeze waits a while, so that a request held by this one is not held again at once."""
        self._froze_at = None
        self._refreeze_at = time.monotonic() + 2 * self.settings.freeze_limit
        metrics.FREEZE_SECONDS.labels("aborted").observe(held)
        m = self.migration
        attempts = m.progress.freeze_attempts + 1
        progress = _progress(m.progress, freeze_attempts=attempts, freeze_ms=round(held * 1000, 1))
        self.log.warning("freeze_aborted", migration=m.id, attempts=attempts, reason=why)
        if attempts >= self.settings.freeze_attempts:
            error = f"the freeze was aborted {attempts} times (last: {why})"
            await self.journal.save(dataclasses.replace(m, progress=progress, error=error))
            return
        await self._advance(Phase.CATCHING_UP, progress=progress)

    async def _cancel(self) -> None:
        await self._leave_source_authoritative()
        await self._advance(Phase.CANCELLED)

    async def _fail_cleanly(self) -> None:
        self.log.error("migration_failed", migration=self.migration.id, error=self.migration.error)
        await self._leave_source_authoritative()
        await self._advance(Phase.FAILED)

    async def _leave_source_authoritative(self) -> None:
        """The source open and owning the queue as before, the target's copy removed."""
        await self.steps.unfreeze_source()
        await self.steps.stop_tracking()
        pace = Pace(self.settings.purge_rate, sleep=self.sleep)
        while gone := await self.steps.remove_partial_copy(self.settings.batch):
            await pace.wait(gone)
            self.guard()

    # --- records ---------------------------------------------------------------------------------

    async def _advance(self, phase: Phase, **changes: Any) -> None:
        before = self.migration
        now = self.clock()
        await self.journal.save(before.to(phase, now, **changes))
        metrics.PHASE_SECONDS.labels(before.phase.value).observe(max(0.0, now - before.updated))
        self.log.info(
            "migration_phase", migration=before.id, phase=phase.value, was=before.phase.value
        )


def _progress(p: Progress, **changes: Any) -> Progress:
    return dataclasses.replace(p, **changes)


class Pace:
    """A rate limit: `wait(n)` after each n units keeps the average at `rate` per second."""

    def __init__(self, rate: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.rate = rate
        self.sleep = sleep
        self.started = time.monotonic()
        self.done = 0

    async def wait(self, units: int) -> None:
        self.done += units
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            await self.sleep(ahead)


PHASES: dict[Phase, Callable[[Machine], Awaitable[None]]] = {
    Phase.INIT: Machine._init,
    Phase.COPYING: Machine._copying,
    Phase.CATCHING_UP: Machine._catching_up,
    Phase.FROZEN: Machine._frozen,
    Phase.SWITCHED: Machine._switched,
    Phase.CLEANUP: Machine._cleanup,
}
