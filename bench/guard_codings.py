"""What the runtime guard adds to re-encoding a compressed page, per content coding.

A gated page from a site that compresses is decoded, gated and re-encoded
(`proxy.html.body.BodyPipeline`); the guard (about 20 KB with the built-in catalogue's
table) is spliced in after `<head>`. This times the whole pipeline for the bench pages
(`pages.py`; the 100 KB one also fed in 4 KB pieces, as a page that streams) with and
without the guard, per coding, in this process (medians of rounds), and with the guard
compressed in line with the page, as before `Encoder.splice` (the encoder's `splice`
replaced by its `feed`).

Usage:  python bench/guard_codings.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
import zlib
from pathlib import Path

import brotli
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pages

from proxy.core.config import make_policy
from proxy.core.consent import read_consent
from proxy.html.body import BodyPipeline
from proxy.html.codings import Encoder
from proxy.html.gate import Additions, GatePlan, HtmlGate
from proxy.html.guard import make_guard

COMPRESS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


def make_pipeline(gate: HtmlGate, coding: str | None) -> BodyPipeline:
    """The body pipeline of a response that leaves in the coding it came in (tag-gate's
    default levels: gzip 1, brotli 4, zstd 3)."""
    return BodyPipeline(
        gate=gate,
        decode=coding,
        encode=coding,
        max_output=1 << 30,
        max_ratio=1000.0,
        gzip_level=1,
        brotli_quality=4,
        zstd_level=3,
        report_only=False,
    )


def per_page(
    plan: GatePlan, additions: Additions, coding: str, body: bytes, n: int, rounds: int, piece: int = 0
) -> float:
    """µs per page; `piece`: the body fed in pieces of that many bytes (a page that
    streams) instead of whole."""
    consent = read_consent(None, None)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            pipeline = make_pipeline(HtmlGate(plan, consent, page_host="shop.example", additions=additions), coding)
            if piece:
                for i in range(0, len(body), piece):
                    pipeline.feed(body[i : i + piece])
                pipeline.end()
            else:
                pipeline.finish(body)
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    policy = make_policy(None)
    head = "<script>" + make_guard(policy).script(read_consent(None, None), "shop.example") + "</script>"
    plan = GatePlan(policy)
    print(f"guard: {len(head):,} bytes; each cell: µs per page through decode -> gate -> encode (median)")
    print("| page | coding | without the guard | with it | added | compressed in line (before) | added |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    inline = Encoder.splice
    small, large = pages.make_small_page(), pages.make_page(100 * 1024)
    for name, page, n, piece in (
        ("2 KB", small, 200, 0),
        ("100 KB", large, 30, 0),
        ("100 KB streamed", large, 30, 4096),
    ):
        for coding in ("gzip", "deflate", "br", "zstd"):
            body = COMPRESS[coding](page)
            bare = per_page(plan, Additions(), coding, body, n, args.rounds, piece)
            spliced = per_page(plan, Additions(head_start=head), coding, body, n, args.rounds, piece)
            Encoder.splice = Encoder.feed  # type: ignore[method-assign,assignment]  # the guard compressed with the page
            try:
                old = per_page(plan, Additions(head_start=head), coding, body, n, args.rounds, piece)
            finally:
                Encoder.splice = inline  # type: ignore[method-assign]
            cells = (f"{bare:.0f}", f"{spliced:.0f}", f"+{spliced - bare:.0f}", f"{old:.0f}", f"+{old - bare:.0f}")
            print(f"| {name} | {coding} | " + " | ".join(cells) + " |")
    print("(a brotli page that gets the guard leaves in zstd or gzip when the client accepts one: splice_coding)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
