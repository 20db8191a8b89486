"""A tiny server run under `ground.workers`, for its tests: a line in, this process's id out.

`python -m tests.ground.worker_app PORT WORKERS DRAIN`. A client that sends `hold` is answered
only once it sends a second line: a request in flight for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable

from ground.logs import configure
from ground.stops import stop_signals
from ground.workers import run_workers

ANSWERING: set[asyncio.Task[None]] = set()


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    assert task is not None
    ANSWERING.add(task)
    task.add_done_callback(ANSWERING.discard)
    line = await reader.readline()
    if line.strip() == b"hold":
        await reader.readline()
    writer.write(f"{os.getpid()}\n".encode())
    await writer.drain()
    writer.close()


async def serve(port: int, drain: float, ready: Callable[[], None]) -> None:
    async with stop_signals() as stop:
        server = await asyncio.start_server(
            answer, "127.0.0.1", port, reuse_port=True, family=socket.AF_INET
        )
        ready()
        await stop.wait()
        server.close()  # stop accepting; the connections being answered go on
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                while ANSWERING:
                    await asyncio.wait(set(ANSWERING))


def main() -> int:
    port, workers, drain = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    configure("info", json=True)
    return run_workers(workers, lambda ready: asyncio.run(serve(port, drain, ready)), drain)


if __name__ == "__main__":
    sys.exit(main())
