"""A webhook subscriber for the notifications benchmark, in a process of its own:
`python -m bench.receiver PORT OUT`. It answers every POST 204 at once and keeps, per
notification, the lag from the time its message's body says it was posted (`{"t": ...}`) to its
receipt; `GET /count` tells how many arrived; on SIGTERM it writes the lags to OUT (JSON)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from aiohttp import web


async def serve(port: int) -> list[float]:
    lags: list[float] = []

    async def notified(request: web.Request) -> web.Response:
        received = time.time()
        notice = json.loads(await request.read())
        lags.append(received - float(notice["body"]["t"]))
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": len(lags)})

    app = web.Application()
    app.router.add_post("/{subscriber}", notified)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    return lags


if __name__ == "__main__":
    import uvloop

    Path(sys.argv[2]).write_text(json.dumps(uvloop.run(serve(int(sys.argv[1])))))
