"""The runtime guard's cost: code size, rule-table weight and build time, and install
time in Chromium measured with performance marks.

    python bench/guard_bench.py --runs 15

Install time is read in the page: a mark in a script just before the guard's (so the
figure includes parsing and compiling it), a mark as the guard script's first statement
and one after the guard returns; medians over fresh browser contexts. Long tasks are
listed with a buffered PerformanceObserver. Nothing here is asserted: the figures are
printed, for the README and reviews.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.config import make_policy
from proxy.core.consent import read_consent
from proxy.html.guard import GuardRules, decode_table, guard_sizes

CONSENTS = ("", "analytics", "analytics.social", "functional.analytics.social")


def table_figures() -> None:
    policy = make_policy(None)
    print("rule tables for the built-in catalogue (page host 'www.shop.example'):")
    print("| consent | vendors | bytes | gzip | first build | memoised |")
    print("| --- | --- | --- | --- | --- | --- |")
    guard = GuardRules(policy)
    for granted in CONSENTS:
        consent = read_consent(f"tg_consent={granted}" if granted else None, None)
        t0 = time.perf_counter()
        text = guard.rules_json(consent, "www.shop.example")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(1000):
            guard.rules_json(consent, "www.shop.example")
        again = (time.perf_counter() - t0) / 1000
        vendors = len(decode_table(json.loads(text))[0])
        print(
            f"| {granted or 'none'} | {vendors} | {len(text):,} | {len(gzip.compress(text.encode(), 9)):,} |"
            f" {first * 1000:.2f} ms | {again * 1e6:.1f} µs |"
        )


async def install_figures(runs: int) -> None:
    from tests.e2e.world import World, find_chromium

    chromium = find_chromium()
    if chromium is None:
        print("chromium is not installed: install time not measured")
        return
    world = World(chromium)
    await world.start()
    try:
        world.site.guard_policies["default"] = make_policy(None)
        total: list[float] = []
        run: list[float] = []
        realm: list[float] = []
        long_tasks = 0
        for i in range(runs):
            consent = CONSENTS[i % 2]
            query = "?marks=1" + (f"&consent={consent}" if consent else "")
            async with world.tab() as tab:
                await tab.page.goto(world.url(world.site.port, "guard/install.html") + query, wait_until="load")
                m = await tab.page.evaluate(
                    """() => new Promise(done => {
                        const t = n => performance.getEntriesByName(n)[0].startTime;
                        const out = {total: t("tg-guard-end") - t("tg-guard-0"),
                                     run: t("tg-guard-end") - t("tg-guard-run"), long: 0};
                        try {
                          new PerformanceObserver(l => { out.long = l.getEntries().length; })
                            .observe({type: "longtask", buffered: true});
                        } catch (e) {}
                        setTimeout(() => done(out), 50);
                    })"""
                )
                # install() alone into fresh same-origin realms: many per page, so the
                # browser's coarse timer (100 µs steps without cross-origin isolation)
                # averages out. window.frames[i] does not go through a hooked getter.
                realms = await tab.page.evaluate(
                    """() => {
                        document.body.insertAdjacentHTML("beforeend", "<iframe></iframe>".repeat(40));
                        const t0 = performance.now();
                        for (let i = 0; i < window.frames.length; i++) __tagGateGuard.i(window.frames[i]);
                        return (performance.now() - t0) / window.frames.length;
                    }"""
                )
            total.append(m["total"])
            run.append(m["run"])
            realm.append(realms)
            long_tasks += m["long"]
        print(f"install in Chromium over {runs} page loads (consent none / analytics alternating):")
        print(f"  parse + compile + run: median {statistics.median(total):.3f} ms, max {max(total):.3f} ms")
        print(f"  run only:              median {statistics.median(run):.3f} ms, max {max(run):.3f} ms")
        print(
            "  install() into a fresh realm (hooks only, mean of 40 per page):"
            f" median {statistics.median(realm):.3f} ms"
        )
        print(f"  long tasks on those pages: {long_tasks}")
        print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        await world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sizes = guard_sizes()
    print(
        f"guard.js: source {sizes['source']:,} bytes; compact {sizes['compact']:,} bytes,"
        f" {sizes['compact_gzip']:,} gzip; minified (what ships) {sizes['minified']:,} bytes,"
        f" {sizes['minified_gzip']:,} gzip (level 9)"
    )
    table_figures()
    if args.runs > 0:
        asyncio.run(install_figures(args.runs))


if __name__ == "__main__":
    main()
