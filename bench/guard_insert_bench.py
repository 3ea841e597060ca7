"""What inserting the runtime guard costs the gate, in process: `feed_whole` of the 2 KB
benchmark page (`pages.make_small_page`) for a visitor who refused everything, with and
without the guard's `<script>` as `Additions.head_start`, and with an empty
`<script></script>` there (what any head-start addition costs, whatever its size), and
the header step's own work (`RuntimeLayers.add_guard`, memoised per consent key and
page host).

    python bench/guard_insert_bench.py [--repeat 15] [--number 2000]

Figures are the median and the best of `--repeat` interleaved batches of `--number`
calls, measured with `time.process_time` (CPU time of this process, less sensitive to
other load on a shared machine than wall time; on a busy machine the best batch is the
steadier figure, since load only adds); ratios are against the same page without the
guard in the same run. Output bytes are printed too: the gate copies every byte it emits.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pages

from proxy.core.config import parse_config
from proxy.core.consent import read_consent
from proxy.core.csp import decide_guard_delivery
from proxy.html.gate import HtmlGate
from proxy.html.run import NO_ADDITIONS, Additions
from proxy.http.layers import RuntimeLayers
from proxy.http.stages import Stages
from proxy.metrics import Metrics


def per_call(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Median CPU seconds per call over `repeat` batches of `number` calls."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        for _ in range(number):
            fn()
        times.append((time.process_time() - t0) / number)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args()
    config = parse_config({"server": {"upstream": "http://127.0.0.1:9"}})
    stages = Stages(config, Metrics())
    layers = RuntimeLayers(config, Metrics())
    plan = stages.gate_plan
    none = read_consent(None, None)
    host = "shop.example"
    page = pages.make_small_page()
    delivery = decide_guard_delivery([], "https")
    guarded = layers.add_guard(NO_ADDITIONS, none, host, delivery, "/")
    markup = guarded.head_tag + guarded.head_start
    empty = Additions(head_start="<script></script>")

    def gate(additions: Additions) -> Callable[[], bytes]:
        return lambda: HtmlGate(plan, none, page_host=host, additions=additions).feed_whole(page)

    plain_out = gate(NO_ADDITIONS)()
    guard_out = gate(guarded)()
    assert markup.encode() in guard_out
    print(f"2 KB page: {len(page):,} bytes in; out {len(plain_out):,} without the guard, {len(guard_out):,} with it")
    print(f"guard <script> element: {len(markup):,} characters")
    n, r = args.number, args.repeat
    # interleaved batches, so drift in the machine's load hits all alike
    plain: list[float] = []
    small: list[float] = []
    guard: list[float] = []
    targets = [(plain, gate(NO_ADDITIONS)), (small, gate(empty)), (guard, gate(guarded))]
    rng = random.Random(1)
    for _ in range(r):
        rng.shuffle(targets)  # no fixed order: caches and the allocator favour none
        for times, fn in targets:
            times.append(per_call(fn, n, 1))
    rows = (("no guard", plain), ("an empty head addition", small), ("with the guard", guard))
    base_median, base_min = statistics.median(plain), min(plain)
    for label, times in rows:
        med, low = statistics.median(times), min(times)
        print(
            f"feed_whole, {label + ':':24s} median {med * 1e6:6.1f} µs ({(med / base_median - 1) * 100:+5.1f} %),"
            f" best {low * 1e6:6.1f} µs ({(low - base_min) * 1e6:+5.1f} µs, {(low / base_min - 1) * 100:+5.1f} %)"
        )
    step = per_call(lambda: layers.add_guard(NO_ADDITIONS, none, host, delivery, "/"), n * 10, r)
    print(f"add_guard (memoised): {step * 1e6:.2f} µs")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
