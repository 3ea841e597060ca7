"""Gated-page throughput with the runtime layers on and off, interleaved in one run.

Method (as proxy_bench.py, ../shared/docs/perf-anchors.md §2): an origin nginx (1
worker) serves the pages as HTML; the tag-gate processes under test run on CPU 1 (one
under load at a time), wrk and the origin on CPU 0. Every round runs every (page,
target) pair once in rotating order; figures are medians over the rounds, and the
ratio is taken against `off` in the same run. Requests carry no consent cookie, so
every page is gated and (when on) gets the guard, precomputed per consent key.

Targets (each its own tag-gate process and config):
  off        [html.guard] enabled = false, [html.csp] mode = "off"
  guard      the guard on, the CSP layer off
  guard-ext  the same with [html.guard] delivery = "external" (a <script src> the
             browser caches, instead of the guard in every page)
  guard+csp  the defaults: the guard on, the CSP layer report-only on 10 % of pages

With --no-cache the gated-page cache is off too (html.cache_size = 0), so every
request runs the whole gate: the guard's share of the gate's own cost. With --nonce
the origin sends a strict CSP with a nonce new for every response (nginx's
$request_id), as a strict-CSP site does: the guard's tag carries it, and no such page
is cached (its key never recurs). With --gzip the origin compresses its pages and wrk
asks for gzip, as browsers do: tag-gate decodes, gates and re-encodes them (the guard
copied in already compressed), and the guard weighs its compressed size on the wire.

Usage:  python bench/guard_throughput.py [--rounds 5] [--seconds 5] [--conns 50] [--no-cache] [--nonce] [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages
import proxy_bench as pb

REPO = Path(__file__).resolve().parent.parent

TARGETS = {
    "off": '[html.guard]\nenabled = false\n\n[html.csp]\nmode = "off"\n',
    "guard": '[html.csp]\nmode = "off"\n',
    "guard-ext": '[html.guard]\ndelivery = "external"\n\n[html.csp]\nmode = "off"\n',
    "guard+csp": "",
}


GZIP = "gzip on; gzip_min_length 0; gzip_comp_level 1; "  # text/html is always among gzip_types
NONCE_CSP = "add_header Content-Security-Policy \"script-src 'nonce-$request_id' 'strict-dynamic'; object-src 'none'\";"


def start(name: str, port: int, upstream: int, run: Path, cache: bool) -> subprocess.Popen[bytes]:
    conf = run / f"{name}.toml"
    html = "" if cache else "[html]\ncache_size = 0\n\n"
    conf.write_text(f'[server]\nupstream = "http://127.0.0.1:{upstream}"\n\n{html}{TARGETS[name]}')
    command = ["taskset", "-c", "1", sys.executable, "-m", "proxy", "serve", "--config", str(conf)]
    command += ["--listen", f"127.0.0.1:{port}", "--admin-listen", "off", "--log-level", "warning"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's user and system CPU so far (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--no-cache", action="store_true", help="turn the gated-page cache off in every target")
    ap.add_argument("--nonce", action="store_true", help="pages with a strict CSP and a nonce per response")
    ap.add_argument("--gzip", action="store_true", help="gzip pages from the origin, and clients that accept gzip")
    args = ap.parse_args()
    pb.ensure_tools()
    accept = ["Accept-Encoding: gzip"] if args.gzip else []
    scratch = Path(tempfile.mkdtemp(prefix="tag-gate-guard-bench-"))
    www, run = scratch / "www", scratch / "run"
    (www / "html").mkdir(parents=True)
    run.mkdir()
    for folder in (scratch, www, www / "html", run):
        folder.chmod(0o755)
    files = {"2KB": pages.make_small_page(), "100KB": pages.make_page(100 * 1024)}
    for name, data in files.items():
        (www / "html" / f"{name}.html").write_bytes(data)
    origin_port = pb.free_port()
    ports = {name: pb.free_port() for name in TARGETS}
    procs: list[subprocess.Popen[bytes]] = []
    pids: dict[str, int] = {}
    try:
        origin = pb.nginx_conf(
            run,
            "origin",
            "01",
            f"types {{ }}\n  server {{ listen 127.0.0.1:{origin_port} backlog=4096; root {www};"
            " location /html/ { default_type text/html; "
            + (NONCE_CSP if args.nonce else "")
            + (GZIP if args.gzip else "")
            + "} }",
        )
        procs.append(subprocess.Popen([pb.nginx_bin(), "-c", str(origin), "-e", str(run / "nginx-stderr.log")]))
        for name, port in ports.items():
            procs.append(start(name, port, origin_port, run, not args.no_cache))
            pids[name] = procs[-1].pid
        for port in (origin_port, *ports.values()):
            pb.wait_port(port)
        # What each target sends: the guard is there exactly where it should be.
        for name, port in ports.items():
            ask = urllib.request.Request(
                f"http://127.0.0.1:{port}/html/2KB.html", headers=dict(h.split(": ") for h in accept)
            )
            with urllib.request.urlopen(ask, timeout=10) as resp:
                body = wire = resp.read()
                coding = resp.headers.get("Content-Encoding")
            if coding == "gzip":
                body = gzip.decompress(wire)
            has_guard = b"__tagGateGuard" in body or b"/__tag-gate/guard.js" in body
            nonced = re.search(rb"<script[^>]*\snonce=", body[:1000]) is not None  # the guard's tag
            sent = f", {len(wire):,} on the wire ({coding})" if coding else ""
            print(f"{name:10} guard in page: {has_guard} (nonce: {nonced}), page {len(body):,} bytes{sent}", flush=True)
        print(f"warm-up: 3 s per target and page ({len(ports)} targets)", flush=True)
        for port in ports.values():
            for page in files:
                pb.run_wrk(f"http://127.0.0.1:{port}/html/{page}.html", 3, args.conns, accept)
        results: dict[tuple[str, str], list[float]] = {}
        # tag-gate's own CPU per request (user, system), less noisy than req/s on a
        # shared machine: where a difference is spent (Python, or the kernel's copies)
        costs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        keys = [(page, t) for page in files for t in ports]
        for rnd in range(args.rounds):
            order = keys[rnd % len(keys) :] + keys[: rnd % len(keys)]
            for page, target in order:
                before = cpu_seconds(pids[target])
                r = pb.run_wrk(f"http://127.0.0.1:{ports[target]}/html/{page}.html", args.seconds, args.conns, accept)
                after = cpu_seconds(pids[target])
                n = max(r["rps"] * args.seconds, 1.0)
                costs.setdefault((page, target), []).append(
                    ((after[0] - before[0]) / n * 1e6, (after[1] - before[1]) / n * 1e6)
                )
                results.setdefault((page, target), []).append(r["rps"])
                flag = "  ERRORS" if r["errors"] else ""
                print(f"round {rnd + 1} {page:>5} {target:10} {r['rps']:9.0f} req/s{flag}", flush=True)
                time.sleep(0.5)
        cache = "off" if args.no_cache else "on" + (" (unused: every page has its nonce)" if args.nonce else "")
        print(
            f"\nmedians over {args.rounds} rounds, {args.seconds} s each, {args.conns} connections,"
            f" gated-page cache {cache} (tag-gate on CPU 1; wrk and origin on CPU 0)"
        )
        print(f"{'page':>5} {'target':10} {'req/s':>9} {'vs off':>8}   CPU µs/request: user  system  total  vs off")
        for page in files:
            base = statistics.median(results[(page, "off")])
            base_cpu = statistics.median(u + k for u, k in costs[(page, "off")])
            for target in ports:
                rps = statistics.median(results[(page, target)])
                user = statistics.median(u for u, _ in costs[(page, target)])
                system = statistics.median(k for _, k in costs[(page, target)])
                total = statistics.median(u + k for u, k in costs[(page, target)])
                print(
                    f"{page:>5} {target:10} {rps:9.0f} {rps / base - 1:+8.1%}"
                    f"   {user:21.1f} {system:7.1f} {total:6.1f} {total / base_cpu - 1:+7.1%}"
                )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
