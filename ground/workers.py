"""Pre-forked workers: N processes serving one port under one supervisor (gunicorn's `-w`).

    supervisor ──fork──▶ worker 1 .. N     each serves the port itself, with SO_REUSEPORT
      a worker listens   ──▶ it tells the supervisor (SIGUSR1): the servers can start
      a worker dies      ──▶ another is forked in its place, after a backoff if they die young
      a worker dies before any ever listened ──▶ a start-up error (a taken port, bad settings):
                             stop the others and exit 1, as one process would have
      SIGTERM or SIGINT  ──▶ SIGTERM to every worker, which drains; after the drain time (and a
                             little for start and close) SIGKILL the rest; exit 0 if all ended well

The supervisor binds nothing: each worker binds the port with SO_REUSEPORT, so the kernel spreads
new connections evenly over the workers' own accept queues (one socket shared by all goes to
whichever worker wakes first, which piles connections on one), and a worker is the same server
as a single process, with nothing handed down. Workers are forked before the supervisor runs an
event loop or a thread, so each starts clean; each dies with the supervisor, even a SIGKILLed one
(`die_with_parent`). With one worker there is no supervisor at all: the server runs in-process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ground.logs import get_logger

log = get_logger("workers")

# Runs one server until it is told to stop; calls `ready()` once it listens.
Serve = Callable[[Callable[[], None]], None]

READY = signal.SIGUSR1
STOPS = {signal.SIGTERM, signal.SIGINT}
WATCHED = {signal.SIGCHLD, READY, *STOPS}
CLOSE_GRACE = 5.0  # seconds a worker gets beyond the drain time, to finish its start and close
YOUNG = 10.0  # a worker that dies younger than this is restarted after a growing backoff
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Loaded once, here: a `preexec_fn` runs between fork and exec, where loading a library could
# wait for a lock some other thread of the parent held at the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send `signum` to this process when its parent dies, however it dies.

    For a child just forked or about to exec (`preexec_fn`): the setting survives exec.
    A parent gone before the call already left this process to init: stop at once then.
    """
    parent = os.getppid()
    if _LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


@dataclass
class Slot:
    """One worker's place: the process in it now, and how its predecessors fared."""

    index: int
    pid: int = 0  # 0: empty, a replacement is due at `due`
    started: float = 0.0
    due: float = 0.0
    young_deaths: int = 0  # in a row


class Workers:
    def __init__(self, count: int, serve: Serve, drain: float) -> None:
        self.serve = serve
        self.drain = drain
        self.slots = [Slot(i) for i in range(1, count + 1)]
        self.listened = False  # some worker has listened: later deaths are not start-up errors
        self.clean = True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT or a start-up error; the process's exit status."""
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)  # taken one at a time by sigtimedwait
        for slot in self.slots:
            self._fork(slot)
        log.info("workers_started", workers=len(self.slots), pids=[s.pid for s in self.slots])
        while True:
            info = signal.sigtimedwait(WATCHED, self._wait())
            if info is not None and info.si_signo in STOPS:
                log.info("workers_stopping", signal=signal.Signals(info.si_signo).name)
                return self._stop()
            if info is not None and info.si_signo == READY:
                self.listened = True
            if not self._reap():
                log.error("worker_failed_to_start")
                self.clean = False
                return self._stop()
            now = time.monotonic()
            for slot in self.slots:
                if slot.pid == 0 and slot.due <= now:
                    self._fork(slot)
                    log.info("worker_restarted", worker=slot.index, pid=slot.pid)

    def _wait(self) -> float:
        """Seconds until the next replacement is due (a minute when none is)."""
        due = [s.due for s in self.slots if s.pid == 0]
        return max(0.0, min(due) - time.monotonic()) if due else 60.0

    def _fork(self, slot: Slot) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(parent)
        slot.pid, slot.started = pid, time.monotonic()

    def _child(self, parent: int) -> NoReturn:
        """A worker: serve until stopped, then leave without running the supervisor's code."""
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
            die_with_parent()
            self.serve(lambda: os.kill(parent, READY))
            code = 0
        except KeyboardInterrupt:  # a stop before the server's loop took the signals
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> bool:
        """Collect the workers that ended and schedule their replacements; False when one ended
        before any worker ever listened."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            now = time.monotonic()
            code = os.waitstatus_to_exitcode(status)
            log.error("worker_exited", worker=slot.index, pid=pid, code=code)
            if not self.listened:
                slot.pid = 0
                return False
            slot.young_deaths = slot.young_deaths + 1 if now - slot.started < YOUNG else 0
            backoff = BACKOFF_FIRST * 2 ** (slot.young_deaths - 1) if slot.young_deaths else 0
            slot.pid, slot.due = 0, now + min(backoff, BACKOFF_MAX)

    def _stop(self) -> int:
        """SIGTERM to every worker, wait for them within the drain time, SIGKILL the rest."""
        live = {s.pid for s in self.slots if s.pid}
        for pid in live:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain + CLOSE_GRACE
        while live:
            for pid in list(live):
                ended, status = os.waitpid(pid, os.WNOHANG)
                if ended:
                    live.discard(pid)
                    self.clean = self.clean and os.waitstatus_to_exitcode(status) == 0
            left = deadline - time.monotonic()
            if not live:
                break
            if left <= 0:
                log.error("workers_killed", pids=sorted(live))
                for pid in live:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                self.clean = False
                break
            signal.sigtimedwait({signal.SIGCHLD}, min(left, 0.5))  # further stop signals wait
        log.info("workers_stopped", clean=self.clean)
        return 0 if self.clean else 1


def run_workers(count: int, serve: Serve, drain: float) -> int:
    """Serve with `count` workers; the exit status. One worker: `serve` in this very process."""
    if count < 1:
        raise ValueError("workers must be at least 1")
    if count == 1:
        serve(lambda: None)
        return 0
    return Workers(count, serve, drain).run()
