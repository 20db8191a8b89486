"""How a server learns it should stop: SIGTERM or SIGINT, taken by the event loop.

aiohttp's own signal handling (`handle_signals=True`) raises GracefulExit from inside the loop:
it escapes `asyncio.run`, which then cancels every task, in-flight requests included, and the
process exits with status 1. Here a signal only sets an event; the server's own shutdown
sequence then runs in an ordinary task (stop accepting, drain, close), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@asynccontextmanager
async def stop_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT, for as long as the block runs.

    The handlers stay for the whole block, the shutdown sequence included: a second signal
    during the drain (a supervisor forwarding SIGTERM after a Ctrl-C reached the whole process
    group) must not end the process in the middle of it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
