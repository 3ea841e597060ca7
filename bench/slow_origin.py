"""A slow origin for time-to-first-byte runs: serves a 1 MB HTML page with Content-Length,
64 KiB at once and then 64 KiB every 50 ms (about 0.8 s in all).

Usage: python bench/slow_origin.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages

PAGE = pages.make_page(1024 * 1024, 2)
STEP, DELAY = 65536, 0.05


async def slow(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    resp.content_length = len(PAGE)
    await resp.prepare(request)
    for i in range(0, len(PAGE), STEP):
        if i:
            await asyncio.sleep(DELAY)
        await resp.write(PAGE[i : i + STEP])
    await resp.write_eof()
    return resp


async def main() -> None:
    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
