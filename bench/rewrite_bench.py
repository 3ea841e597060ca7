"""Rewrite benchmark: the HTML gate against two lol-html references, in one run.

Method (../shared/docs/perf-anchors.md §1): single core (pinned to CPU 1 when it
exists), pages fed in 16 KiB chunks, each case repeated for at least `--min` seconds per
sample, rounds interleaved in rotating order, medians reported in MB/s of uncompressed
HTML (1 MB = 10^6 bytes).

Cases:
  lol-html, no handlers               parse + pass-through (ceiling)
  lol-html, gate selectors, read URL  the gate's selectors with a handler that only reads
                                      the URL attribute (the reference the gate is held to)
  gate, all refused                   the full gate, no consent: every tag acted on
  gate, all granted (parsed)          the gate parsing a page it leaves unchanged
  gate, all refused, whole page       the page handed over complete (`feed_whole`: one
                                      pass, `<a ping>` selectors only if the page has one),
                                      as the proxy does when the upstream has sent it all
  gzip: decode, gate, re-encode       BodyPipeline on a gzip-6 page, re-encoded at level 1
Also: catalogue load-and-compile time and per-lookup costs.

Usage: python bench/rewrite_bench.py [--rounds 7] [--min 0.3]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lolhtml
import pages

from proxy.core.catalog import Catalog, host_of, load_builtin_vendors, load_ocd_vendors
from proxy.core.config import (
    make_policy,
    parse_config,
)
from proxy.core.consent import read_consent
from proxy.core.policy import Kind
from proxy.html.body import BodyPipeline
from proxy.html.gate import SELECTORS, HtmlGate, gate_selectors
from proxy.http.stages import Stages
from proxy.metrics import Metrics

CHUNK = 16384
URL_ATTRS = ("src", "href", "data", "srcset", "poster", "ping")


class _ReadUrl:
    __slots__ = ()

    def element(self, e: object) -> None:
        for name in URL_ATTRS:
            if e.get_attribute(name) is not None:  # type: ignore[attr-defined]
                return


def lol_noop(chunks: list[bytes]) -> bytes:
    out: list[bytes] = []
    sink: Any = out.append
    r = lolhtml.HTMLRewriter(sink)
    for c in chunks:
        r.write(c)
    r.end()
    return b"".join(out)


def lol_read(chunks: list[bytes], selectors: list[str]) -> bytes:
    out: list[bytes] = []
    sink: Any = out.append
    r = lolhtml.HTMLRewriter(sink)
    handler = _ReadUrl()
    for selector in selectors:
        r.on(selector, handler)
    for c in chunks:
        r.write(c)
    r.end()
    return b"".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min", type=float, default=0.3, help="seconds per sample")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    # ------------------------------------------------------------- catalogue costs
    t1 = time.perf_counter()
    builtins = load_builtin_vendors()
    ocd = load_ocd_vendors()
    t2 = time.perf_counter()
    catalog = Catalog(builtins, cookie_fallback=ocd)
    t3 = time.perf_counter()
    print(
        f"catalogue: {len(builtins)} vendors and {sum(len(v.cookies) for v in ocd)} Open Cookie Database names; "
        f"load+validate {1000 * (t2 - t1):.1f} ms, compile {1000 * (t3 - t2):.1f} ms"
    )
    config = parse_config({})
    policy = make_policy(config, catalog)
    none = read_consent(None, None)
    lookups: dict[str, Callable[[], object]] = {
        "host_of(url)": lambda: host_of("https://www.googletagmanager.com/gtag/js?id=G-1"),
        "vendor_for_host": lambda: catalog.vendor_for_host("www.googletagmanager.com"),
        "classify_url (memoised)": lambda: policy.classify_url("https://connect.facebook.net/x.js", "shop.example"),
        "classify_url (uncached)": lambda: policy._classify_url("https://connect.facebook.net/x.js", "shop.example"),
        "decide_url": lambda: policy.decide_url(none, Kind.SCRIPT, "https://static.hotjar.com/c/h.js", "s"),
        # hosts carrying URL entries: one the entries' gate refuses, one decided by a query condition
        "vendor_for_location (gated)": lambda: catalog.vendor_for_location(
            "connect.facebook.net", "https://connect.facebook.net/en_US/fbevents.js"
        ),
        "vendor_for_location (query)": lambda: catalog.vendor_for_location(
            "www.googletagmanager.com", "https://www.googletagmanager.com/gtag/js?id=AW-1"
        ),
        "vendor_for_cookie (exact)": lambda: catalog.vendor_for_cookie("_fbp"),
        "vendor_for_cookie (pattern)": lambda: catalog.vendor_for_cookie("_ga_ABC123"),
        "vendor_for_cookie (OCD)": lambda: catalog.vendor_for_cookie("GRV_BHV_UID_42"),
        "vendor_for_cookie (unknown)": lambda: catalog.vendor_for_cookie("shop_session_42"),
        "classify_inline (300 B)": lambda: catalog.vendor_for_inline(
            "window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);}" * 3
            + "gtag('config', 'G-1');"
        ),
        "read_consent (OneTrust)": lambda: read_consent(
            "OptanonConsent=groups=C0001%3A1%2CC0002%3A0&interactionCount=1", None
        ),
    }
    for name, fn in lookups.items():
        n = 20000
        dt = min(timeit.repeat(fn, number=n, repeat=3)) / n
        print(f"  {name:28s} {dt * 1e6:7.2f} µs")

    # ------------------------------------------------------------- rewrite throughput
    stages = Stages(config, Metrics())
    plan = stages.gate_plan
    selectors = [SELECTORS[name] for name in gate_selectors(plan)]
    print(f"gate selectors (html.inline_styles = {plan.inline_styles}): {', '.join(selectors)}")
    everything = read_consent("tg_consent=functional.analytics.advertising.social", None)

    def gate(consent: object) -> Callable[[list[bytes]], bytes]:
        def run(chunks: list[bytes]) -> bytes:
            g = HtmlGate(plan, consent, page_host="shop.example")  # type: ignore[arg-type]
            out = [g.feed(c) for c in chunks]
            out.append(g.end())
            return b"".join(out)

        return run

    def gate_whole(page: bytes) -> bytes:
        return HtmlGate(plan, none, page_host="shop.example").feed_whole(page)

    def gzip_path(encoded: list[bytes]) -> bytes:
        p = BodyPipeline(
            gate=HtmlGate(plan, none, page_host="shop.example"),
            decode="gzip",
            encode="gzip",
            max_output=1 << 30,
            max_ratio=1000.0,
            gzip_level=config.html.gzip_level,
            brotli_quality=4,
            zstd_level=3,
            report_only=False,
        )
        out = [p.feed(c) for c in encoded]
        out.append(p.end())
        return b"".join(out)

    results: dict[str, dict[str, float]] = {}
    for label, page in (("100 KB", pages.make_page(100 * 1024, 1)), ("1 MB", pages.make_page(1024 * 1024, 2))):
        chunks = [page[i : i + CHUNK] for i in range(0, len(page), CHUNK)]
        gz = gzip.compress(page, 6)
        gz_chunks = [gz[i : i + CHUNK] for i in range(0, len(gz), CHUNK)]
        cases: dict[str, Callable[[], bytes]] = {
            "lol-html, no handlers": partial(lol_noop, chunks),
            "lol-html, gate selectors, read URL": partial(lol_read, chunks, selectors),
            "gate, all refused": partial(gate(none), chunks),
            "gate, all granted (parsed)": partial(gate(everything), chunks),
            "gate, all refused, whole page": partial(gate_whole, page),
            "gzip: decode, gate, re-encode": partial(gzip_path, gz_chunks),
        }
        refused = cases["gate, all refused"]()
        assert cases["gate, all refused, whole page"]() == refused
        print(
            f"\n== {label} page: {len(page)} bytes, {len(chunks)} chunks; gated output {len(refused)} bytes; "
            f"gzip-6 {len(gz)} bytes, re-encoded at level {config.html.gzip_level}: "
            f"{len(cases['gzip: decode, gate, re-encode']())} bytes"
        )
        reps = {}
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            reps[name] = max(1, int(args.min / max(time.perf_counter() - t, 1e-6)))
        samples: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                gc.collect()
                t = time.perf_counter()
                for _ in range(reps[name]):
                    cases[name]()
                samples[name].append(len(page) * reps[name] / (time.perf_counter() - t) / 1e6)
        med = {name: statistics.median(s) for name, s in samples.items()}
        results[label] = med
        ref = med["lol-html, gate selectors, read URL"]
        for name in names:
            print(
                f"  {name:36s} {med[name]:8.1f} MB/s  (min {min(samples[name]):7.1f}, max {max(samples[name]):7.1f})"
                f"   x{med[name] / ref:.2f} of the read-URL reference"
            )
    print("\ntargets: gate, all refused >= 0.6x the read-URL reference; gzip path >= 60 MB/s")
    for label, med in results.items():
        ratio = med["gate, all refused"] / med["lol-html, gate selectors, read URL"]
        print(f"  {label}: gate/reference x{ratio:.2f}, gzip path {med['gzip: decode, gate, re-encode']:.0f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
