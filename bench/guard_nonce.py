"""What a CSP nonce new for every response costs a gated page that gets the runtime guard.

A strict-CSP site sends `script-src 'nonce-…'` with a new nonce on every page, and the
guard's `<script>` carries it. This times, in this process, for the 2 KB bench page
(`pages.py`) of a visitor without consent: the header step (`Stages.plan_response`, the
guard's delivery decided from the site's policy) and the body pipeline (gate and, for
the gzip row, decode and re-encode with the guard spliced in), with no policy, with the
same nonce on every response, and with a fresh nonce each time. Batches of the three
run in shuffled order; medians of the rounds.

Usage:  python bench/guard_nonce.py [--rounds 9] [--number 300]
"""

from __future__ import annotations

import argparse
import gzip
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from multidict import CIMultiDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pages
from guard_codings import make_pipeline

from proxy.core.config import parse_config
from proxy.html.gate import HtmlGate
from proxy.http.stages import Stages
from proxy.metrics import Metrics

POLICY = "script-src 'nonce-{}' 'strict-dynamic'; object-src 'none'"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--number", type=int, default=300)
    args = ap.parse_args()
    stages = Stages(parse_config({"html": {"csp": {"mode": "off"}}}), Metrics())
    visitor = stages.visitor((), None)
    page = pages.make_small_page()
    bodies = {None: page, "gzip": gzip.compress(page)}

    def one(nonce: str | None, coding: str | None, body: bool) -> None:
        headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html; charset=utf-8"})
        if coding:
            headers["Content-Encoding"] = coding
        if nonce:
            headers["Content-Security-Policy"] = POLICY.format(nonce)
        plan = stages.plan_response(
            method="GET",
            status=200,
            path="/",
            headers=headers,
            visitor=visitor,
            client_accept_encoding="gzip",
            host="www.shop.test",
            secure=True,
            conditional_ours=False,
        )
        if not body:
            return
        gate = HtmlGate(
            stages.gate_plan, visitor.consent, page_host="www.shop.test", additions=plan.additions, nonce=plan.nonce
        )
        make_pipeline(gate, plan.encode).finish(bodies[coding])

    nonces: dict[str, Callable[[], str | None]] = {
        "no policy": lambda: None,
        "one nonce for all": lambda: "n0nce",
        "a fresh nonce each": lambda: secrets.token_urlsafe(16),
    }
    rows = [("header step", None, False), ("header step + pipeline", None, True), ("... gzip", "gzip", True)]
    for label, coding, body in rows:
        times: dict[str, list[float]] = {k: [] for k in nonces}
        order = list(nonces)
        for _ in range(args.rounds):
            random.shuffle(order)
            for kind in order:
                made = [nonces[kind]() for _ in range(args.number)]
                start = time.perf_counter()
                for nonce in made:
                    one(nonce, coding, body)
                times[kind].append((time.perf_counter() - start) / args.number * 1e6)
        cells = "  ".join(f"{kind}: {statistics.median(v):6.1f} µs" for kind, v in times.items())
        print(f"{label:24s} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
