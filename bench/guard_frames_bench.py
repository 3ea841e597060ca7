"""What the frames of a page's markup cost with the runtime guard's `guard-frames.js`
after each: a page of N `<iframe>`s without `src`, loaded in Chromium with and without
that script after each frame (the guard inline in both), timed from a mark before the
first frame to one after the last; medians over fresh pages.

Chromium makes a frame's JavaScript realm only when script first touches the frame;
the script makes it at once and installs the guard's hooks there, so code reaching the
frame as `window.frames[i]` finds it guarded. This measures that price per frame, beside
what the frame itself costs.

    python bench/guard_frames_bench.py [--runs 9] [--frames 1 5 20 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.config import make_policy
from proxy.core.consent import read_consent
from proxy.html.guard import GuardRules
from proxy.html.guard_code import frames_code


def page(guard: str, frames: int, scripts: bool) -> str:
    after = f"<script>{frames_code()}</script>" if scripts else ""
    body = "".join(f'<iframe name="f{i}" hidden></iframe>{after}' for i in range(frames))
    return (
        f"<!doctype html><html><head><script>{guard}</script></head><body>"
        f"<script>performance.mark('a')</script>{body}<script>performance.mark('b')</script></body></html>"
    )


async def run(runs: int, counts: list[int]) -> None:
    from playwright.async_api import async_playwright

    from tests.e2e.world import find_chromium

    chromium = find_chromium()
    if chromium is None:
        print("chromium is not installed: nothing measured")
        return
    guard = GuardRules(make_policy(None)).script(read_consent(None, None), None)

    async def handler(request: web.Request) -> web.Response:
        frames, scripts = int(request.query["n"]), request.query["s"] == "1"
        return web.Response(text=page(guard, frames, scripts), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            print("frames | without the script (ms) | with it (ms) | more per frame (ms)")
            for n in counts:
                got: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(runs):
                    for scripts in (False, True):
                        tab = await browser.new_page()
                        await tab.goto(f"http://127.0.0.1:{port}/?n={n}&s={int(scripts)}")
                        got[scripts].append(
                            await tab.evaluate(
                                "performance.getEntriesByName('b')[0].startTime"
                                " - performance.getEntriesByName('a')[0].startTime"
                            )
                        )
                        await tab.close()
                off, on = statistics.median(got[False]), statistics.median(got[True])
                print(f"{n:6} | {off:24.1f} | {on:11.1f} | {(on - off) / n:19.2f}")
            await browser.close()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 5, 20, 50])
    args = ap.parse_args()
    asyncio.run(run(args.runs, args.frames))


if __name__ == "__main__":
    main()
