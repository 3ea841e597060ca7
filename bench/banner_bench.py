"""Banner benchmark: what the consent banner costs a page, in bytes and in Chromium.

Bytes: /__tag-gate/banner.js as served (raw, gzip -9, brotli 11), the JSON blob the
server writes into every gated page (default purposes; and five listed vendors), and
the whole inserted snippet.

Time, in headless Chromium (Debian's, via Playwright) on the loopback shop of
tests/e2e/banner_site.py behind a real tag-gate: the same page with `[banner]` on and
off (a config reload between visits), visited in a fresh context each time, in
alternating order. For each visit: first contentful paint, DOMContentLoaded, load, and
the first animation frame in which the banner's dialog is open (a requestAnimationFrame
loop installed before the page's own scripts; the frame is painted right after it).
Medians over `--runs` visits per case.

The comparisons that matter are within the run: FCP with the banner against FCP
without it (the banner must not delay the first paint), and banner-open against FCP.

Server side: a visitor who refuses nothing gets pages the gate would not even parse
without the banner; with it, the page goes through the gate for the preferences button.
Measured in-process on the benchmark's pages (bench/pages.py), plain and gzip (decoded,
gated, re-encoded at level 1): medians of `--rounds` runs of the body stage.

Usage: python bench/banner_bench.py [--runs 25] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import brotli
from multidict import CIMultiDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pages import make_page

from proxy.core.banner import make_banner_config, make_banner_snippet, parse_banner
from proxy.core.config import parse_config
from proxy.html.gate import NO_ADDITIONS
from proxy.http.stages import Body, ResponsePlan, Stages
from proxy.metrics import Metrics
from proxy.service import load_assets
from tests.e2e.banner_site import CATALOG, BannerWorld
from tests.e2e.world import find_chromium

VENDORS = ["google-analytics", "meta-pixel", "crisp", "youtube", "stripe"]

WATCH = """(() => {
  window.__bench = {};
  function frame() {
    const host = document.querySelector('tag-gate-banner');
    if (host && host.shadowRoot && host.shadowRoot.querySelector('dialog[open]')) {
      window.__bench.open = performance.now();
      return;
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
})();"""

COLLECT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const js = performance.getEntriesByType('resource').find(r => r.name.endsWith('/__tag-gate/banner.js'));
  return {
    fcp: fcp ? fcp.startTime : null,
    dcl: nav.domContentLoadedEventEnd,
    load: nav.loadEventEnd,
    open: window.__bench.open ?? null,
    script: js ? js.responseEnd : null,
  };
}"""


def sizes() -> list[tuple[str, int, int, int]]:
    def row(name: str, data: bytes) -> tuple[str, int, int, int]:
        return name, len(data), len(gzip.compress(data, 9)), len(brotli.compress(data, quality=11))

    assets = load_assets()
    rows = [row("banner.js (served)", assets["banner.js"][0]), row("activate.js (for scale)", assets["activate.js"][0])]
    ids = {v.id for v in CATALOG.vendors}
    plain = parse_banner({"enabled": True, "proof_sink": "off"})
    listed = parse_banner({"enabled": True, "proof_sink": "off", "vendors": VENDORS}, vendor_ids=ids)
    for lang in ("en", "fr"):
        rows.append(row(f"JSON blob, default purposes, {lang}", make_banner_config(plain, CATALOG, lang).encode()))
    blob = make_banner_config(listed, CATALOG, "fr")
    rows.append(row("JSON blob, 5 vendors listed, fr", blob.encode()))
    rows.append(
        row("inserted snippet (blob + script tag), 5 vendors, fr", make_banner_snippet(blob, "n" * 22).encode())
    )
    return rows


async def timings(runs: int) -> dict[str, dict[str, float]]:
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    world = BannerWorld(chromium, Path(tempfile.mkdtemp()) / "consent.jsonl")
    await world.start()
    samples: dict[str, dict[str, list[float]]] = {"with banner": {}, "without banner": {}}
    try:
        for i in range(runs * 2 + 2):
            case = ("with banner", "without banner")[i % 2]
            with_banner = case == "with banner"
            world.configure(banner={"enabled": with_banner})
            context = await world.browser.new_context(viewport={"width": 1280, "height": 800})
            try:
                page = await context.new_page()
                await page.add_init_script(WATCH)
                await page.goto(world.url(), wait_until="load")
                if with_banner:
                    await page.wait_for_function("() => window.__bench.open != null", timeout=10_000)
                result: dict[str, Any] = await page.evaluate(COLLECT)
            finally:
                await context.close()
            if i < 2:
                continue  # warm-up: the first visit of each case pays the browser's cold start
            for key, value in result.items():
                if value is not None:
                    samples[case].setdefault(key, []).append(float(value))
    finally:
        await world.stop()
    return {case: {k: statistics.median(v) for k, v in values.items()} for case, values in samples.items()}


def server_cost(rounds: int) -> list[tuple[str, float, float]]:
    """(page, µs without the banner, µs with it) for a visitor who refuses nothing."""
    banner = {"enabled": True, "proof_sink": "off"}
    stages = Stages(parse_config({"banner": banner}), Metrics())
    cookie = f"tg_consent=functional.analytics.advertising.social~1~{int(time.time())}~Bench0123456789abcdefg"
    visitor = stages.visitor((cookie,), None)
    rows = []
    for size in (20_000, 100_000, 500_000):
        page = make_page(size)
        for coding in ("identity", "gzip"):
            body = page if coding == "identity" else gzip.compress(page, 6)
            headers: Any = {"Content-Type": "text/html; charset=utf-8"}
            if coding == "gzip":
                headers["Content-Encoding"] = "gzip"
            plan: ResponsePlan = stages.plan_response(
                method="GET",
                status=200,
                path="/",
                headers=CIMultiDict(headers),
                visitor=visitor,
                client_accept_encoding="gzip",
                host="www.example.com",
                secure=True,
                conditional_ours=False,
            )
            assert plan.body is Body.GATE and plan.additions != NO_ADDITIONS
            chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                pipeline = stages.body_pipeline(plan, visitor.consent, "www.example.com")
                out = [pipeline.feed(c) for c in chunks]
                out.append(pipeline.end())
                times.append(time.perf_counter() - t0)
            rows.append((f"{size // 1000} KB, {coding}", 0.0, statistics.median(times) * 1e6))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=25, help="visits per case (default 25)")
    parser.add_argument("--rounds", type=int, default=200, help="body-stage runs per page (default 200)")
    args = parser.parse_args()

    print("| bytes | raw | gzip -9 | brotli 11 |\n| --- | --- | --- | --- |")
    for name, raw, gz, br in sizes():
        print(f"| {name} | {raw:,} | {gz:,} | {br:,} |")

    print("\nserver: a page for a visitor who refuses nothing (median µs of the body stage; 0 = relayed untouched)\n")
    print("| page | banner off | banner on |\n| --- | --- | --- |")
    for name, off, on in server_cost(args.rounds):
        print(f"| {name} | {off:.0f} | {on:,.0f} |")

    medians = asyncio.run(timings(args.runs))
    print(f"\nmedians of {args.runs} visits per case, ms since navigation start (loopback, headless Chromium)\n")
    print("| case | first contentful paint | DOMContentLoaded | load | banner.js received | banner open (frame) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case, m in medians.items():

        def cell(key: str, m: dict[str, float] = m) -> str:
            return f"{m[key]:.1f}" if key in m else "-"

        print(f"| {case} | {cell('fcp')} | {cell('dcl')} | {cell('load')} | {cell('script')} | {cell('open')} |")
    w, wo = medians["with banner"], medians["without banner"]
    ratio, after = w["fcp"] / wo["fcp"], w["open"] - w["fcp"]
    print(f"\nFCP with / without the banner: {ratio:.2f}x; banner open {after:.1f} ms after FCP")


if __name__ == "__main__":
    main()
