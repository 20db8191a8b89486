"""Whether a catch-up converges: the lag of each round against the lowest seen so far.

A catch-up round absorbs what changed since the last one; on a busy queue as much arrives again
while it runs, so the lag (records a round had to change) need not reach the freeze's threshold
however many rounds run. `Convergence` notes each round and says when the lag has stopped
shrinking: no new low for a number of rounds or seconds, whichever comes first. The state
machine then escalates (`migrate.machine`) instead of running rounds for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Round:
    lag: int  # records the round had to change
    seconds: float  # how long it took

    @property
    def rate(self) -> float:
        """Records absorbed per second."""
        return self.lag / self.seconds if self.seconds > 0 else 0.0


class Convergence:
    def __init__(
        self, rounds: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bound_rounds = rounds
        self.bound_seconds = seconds
        self.clock = clock
        self.rounds = 0
        self.best: int | None = None  # the lowest lag so far
        self._best_round = 0
        self._best_at = clock()
        self._stalled_at: float | None = None

    def note(self, r: Round) -> None:
        self.rounds += 1
        if self.best is None or r.lag < self.best:
            self.best, self._best_round, self._best_at = r.lag, self.rounds, self.clock()
            self._stalled_at = None

    def stalled(self) -> bool:
        """The lag has reached no new low for the bound, in rounds or in seconds (the first
        such answer starts `stalled_for`)."""
        if self.best is None:
            return False
        late = self.clock() - self._best_at >= self.bound_seconds
        if late or self.rounds - self._best_round >= self.bound_rounds:
            if self._stalled_at is None:
                self._stalled_at = self.clock()
            return True
        return False

    @property
    def stalled_for(self) -> float:
        """Seconds since the lag was first found stalled (0 while it is not)."""
        return 0.0 if self._stalled_at is None else self.clock() - self._stalled_at
