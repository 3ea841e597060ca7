"""Proxy benchmark: tag-gate against nginx proxy_pass, interleaved in one run.

Method (../shared/docs/perf-anchors.md §2): an origin nginx (1 worker) serves the
pages; the servers under test each get CPU 1 to themselves (edge nginx with
`proxy_pass` and a keep-alive pool, and tag-gate), while wrk and the origin share
CPU 0. Every round runs every (page, target) pair once in rotating order; the figures
are medians over the rounds, and the ratios are taken against nginx in the same run.

Targets:
  nginx          nginx proxy_pass (the reference)
  tag-gate       tag-gate pass-through: the same pages served as text/plain (not HTML)
  tag-gate-html  tag-gate with the HTML gate, no consent (every tag acted on), its
                 gated-page cache off: every request is gated (--html)
  tag-gate-hit   the same with the cache on (the default): after the first request
                 every page is a cache hit (--html)
  anchor-html    the anchor's bare aiohttp + lol-html proxy (perf-anchors.md §2 (d):
                 four element types, no consent; `anchor_proxy.py`), the same pages as
                 HTML (--html): what the gate's coverage costs beyond it, in this run

Pages: 2KB (a small page with one pixel), 100KB (a news front page with 36 tags) and
listing (--html; about 100 KB: a shop category page with 850 plainly relative
first-party <img> and the usual head tags, the element-heavy case).

With --ttfb: time to first byte and to the first 64 KiB of body on a 1 MB page the
origin serves slowly (64 KiB every 50 ms), origin direct vs nginx proxy_pass vs
tag-gate gating the page (no consent), 7 interleaved rounds, medians.

Usage:  python bench/proxy_bench.py [--rounds 3] [--seconds 10] [--conns 50] [--html] [--ttfb]
It installs nginx and wrk with apt-get when they are missing (needs root), runs
everything on 127.0.0.1 and removes its scratch directory at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages

REPO = Path(__file__).resolve().parent.parent


def ensure_tools() -> None:
    missing = [
        tool
        for tool in ("nginx", "wrk")
        if not (shutil.which(tool) or Path("/usr/sbin/nginx").exists() and tool == "nginx")
    ]
    if not missing:
        return
    print(f"installing {', '.join(missing)} with apt-get ...", flush=True)
    pkgs = ["nginx-light" if t == "nginx" else t for t in missing]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], check=True, env=env, stdout=subprocess.DEVNULL)


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def tag_gate(
    port: int, upstream_port: int, admin: str, tree: Path = REPO, config: Path | None = None
) -> subprocess.Popen[bytes]:
    """tag-gate on CPU 1, forwarding to a local upstream, run from the source tree `tree`
    (this checkout, or a `--compare` worktree), with built-in defaults or `config`."""
    command = ["taskset", "-c", "1", sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--upstream", f"http://127.0.0.1:{upstream_port}", "--admin-listen", admin, "--log-level", "warning"]
    if config is not None:
        command += ["--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.Popen(command, cwd=tree, stdout=subprocess.DEVNULL, env=env)


def compare_tree(ref: str, scratch: Path) -> Path:
    """A detached worktree of `ref` in the scratch directory (removed with it)."""
    tree = scratch / "compare"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), ref], check=True)
    return tree


def anchor_proxy(port: int, upstream_port: int) -> subprocess.Popen[bytes]:
    """The anchor's bare aiohttp + lol-html proxy on CPU 1 (see anchor_proxy.py)."""
    script = str(REPO / "bench" / "anchor_proxy.py")
    command = ["taskset", "-c", "1", sys.executable, script, str(port), f"http://127.0.0.1:{upstream_port}"]
    # aiohttp logs a traceback for every connection wrk cuts at the end of a run.
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nginx_conf(run: Path, name: str, cpu_mask: str, body: str) -> Path:
    temp = "".join(f"{k}_temp_path {run}/{name}_{k};\n  " for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = run / f"{name}.conf"
    conf.write_text(
        f"""worker_processes 1;
worker_cpu_affinity {cpu_mask};
worker_rlimit_nofile 20000;
pid {run}/{name}.pid;
error_log {run}/{name}-error.log warn;
daemon off;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 65;
  gzip off;
  {temp}
  {body}
}}
"""
    )
    return conf


def origin_conf(run: Path, www: Path, port: int, kinds: tuple[str, ...] = ("pass", "html")) -> Path:
    """The origin nginx on CPU 0 serving the bench pages: `/pass/` as text/plain and
    `/html/` as text/html (the `kinds` it serves)."""
    types = {"pass": "text/plain", "html": "text/html"}
    locations = "\n".join(f"    location /{k}/ {{ default_type {types[k]}; }}" for k in kinds)
    return nginx_conf(
        run,
        "origin",
        "01",
        f"""types {{ }}
  server {{ listen 127.0.0.1:{port} backlog=4096; root {www};
{locations} }}""",
    )


def parse_wrk(text: str) -> dict[str, float]:
    def ms(s: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        assert m, s
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors:.*|Non-2xx or 3xx responses: \d+", text)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": 1.0 if errors else 0.0}


def run_wrk(url: str, seconds: int, conns: int, headers: list[str]) -> dict[str, float]:
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30)
    return parse_wrk(out.stdout)


def fetch_timed(port: int, path: str) -> dict[str, float]:
    """Raw HTTP/1.1 GET: ms to the first byte, the first body byte, 64 KiB of body, the end."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n".encode())
    buf = b""
    first = first_body = body_64k = None
    head_end = None
    while True:
        data = s.recv(262144)
        now = time.perf_counter()
        if not data:
            break
        first = first or now
        buf += data
        if head_end is None and b"\r\n\r\n" in buf:
            head_end = buf.index(b"\r\n\r\n") + 4
        if head_end is not None:
            body = len(buf) - head_end
            if first_body is None and body > 0:
                first_body = now
            if body_64k is None and body >= 65536:
                body_64k = now
    s.close()
    end = time.perf_counter()

    def ms(t: float | None) -> float:
        return float("nan") if t is None else (t - t0) * 1000

    return {"first_byte": ms(first), "first_body": ms(first_body), "body_64k": ms(body_64k), "total": ms(end)}


def ttfb(origin: int, edge: int, tag_gate: int, rounds: int = 7) -> None:
    targets = {"origin direct": origin, "nginx proxy_pass": edge, "tag-gate (gated, no consent)": tag_gate}
    for port in targets.values():
        fetch_timed(port, "/slow")
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    names = list(targets)
    for rnd in range(rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            samples[name].append(fetch_timed(targets[name], "/slow"))
    print(f"\ntime to first byte, 1 MB page served 64 KiB every 50 ms; medians of {rounds} interleaved rounds")
    for name, runs in samples.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {name:30s} first byte {med['first_byte']:7.2f} ms  first body byte {med['first_body']:7.2f} ms"
            f"  64 KiB of body {med['body_64k']:7.2f} ms  total {med['total']:7.1f} ms"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--html", action="store_true", help="also measure the HTML gate (tag-gate-html)")
    ap.add_argument(
        "--compare",
        metavar="REF",
        help="also run tag-gate as of git REF (targets tag-gate@REF, tag-gate-html@REF) in the same rounds",
    )
    ap.add_argument("--ttfb", action="store_true", help="also measure time to first byte on a slow 1 MB page")
    ap.add_argument("--json", metavar="FILE", help="write the medians as JSON")
    args = ap.parse_args()
    ensure_tools()

    scratch = Path(tempfile.mkdtemp(prefix="tag-gate-bench-"))
    www, run = scratch / "www", scratch / "run"
    (www / "pass").mkdir(parents=True)
    (www / "html").mkdir(parents=True)
    run.mkdir()
    # nginx workers run as an unprivileged user: let them read the pages.
    for folder in (scratch, www, www / "pass", www / "html", run):
        folder.chmod(0o755)
    files = {"2KB": pages.make_small_page(), "100KB": pages.make_page(100 * 1024)}
    if args.html:
        files["listing"] = pages.make_listing_page()
    no_cache = scratch / "no-cache.toml"
    no_cache.write_text("[html]\ncache_size = 0\n")
    for name, data in files.items():
        (www / "pass" / f"{name}.html").write_bytes(data)
        (www / "html" / f"{name}.html").write_bytes(data)

    origin_port, edge_port, tg_port, admin_port = free_port(), free_port(), free_port(), free_port()
    cmp_port, hit_port = free_port(), free_port()
    slow_port, tg_slow_port, anchor_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        origin = origin_conf(run, www, origin_port)
        edge = nginx_conf(
            run,
            "edge",
            "10",
            f"""upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 256; }}
  upstream slow {{ server 127.0.0.1:{slow_port}; keepalive 16; }}
  server {{ listen 127.0.0.1:{edge_port} backlog=4096;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /slow {{ proxy_pass http://slow; }}
    location / {{ proxy_pass http://origin; }} }}""",
        )
        for conf in (origin, edge):
            procs.append(subprocess.Popen([nginx_bin(), "-c", str(conf), "-e", str(run / "nginx-stderr.log")]))
        procs.append(tag_gate(tg_port, origin_port, f"127.0.0.1:{admin_port}", config=no_cache))
        if args.html:
            procs.append(tag_gate(hit_port, origin_port, "off"))
        if args.compare:
            tree = compare_tree(args.compare, scratch)
            knows_cache = "cache_size" in (tree / "proxy" / "core" / "config.py").read_text(errors="replace")
            procs.append(tag_gate(cmp_port, origin_port, "off", tree, no_cache if knows_cache else None))
        if args.html:
            procs.append(anchor_proxy(anchor_port, origin_port))
        if args.ttfb:
            procs.append(
                subprocess.Popen(
                    ["taskset", "-c", "0", sys.executable, str(REPO / "bench" / "slow_origin.py"), str(slow_port)]
                )
            )
            procs.append(tag_gate(tg_slow_port, slow_port, "off"))
        listening = (origin_port, edge_port, tg_port) + ((anchor_port,) if args.html else ())
        listening += (cmp_port,) if args.compare else ()
        listening += (hit_port,) if args.html else ()
        for port in listening + ((slow_port, tg_slow_port) if args.ttfb else ()):
            wait_port(port)
        if args.ttfb:
            ttfb(slow_port, edge_port, tg_slow_port)

        targets = {"nginx": (edge_port, "pass"), "tag-gate": (tg_port, "pass")}
        if args.compare:
            targets[f"tag-gate@{args.compare}"] = (cmp_port, "pass")
        if args.html:
            targets["tag-gate-html"] = (tg_port, "html")
            if args.compare:
                targets[f"tag-gate-html@{args.compare}"] = (cmp_port, "html")
            targets["tag-gate-hit"] = (hit_port, "html")
            targets["anchor-html"] = (anchor_port, "html")
        print(f"warm-up: 3 s per target and page ({len(targets)} targets)", flush=True)
        for _name, (port, kind) in targets.items():
            for page in files:
                run_wrk(f"http://127.0.0.1:{port}/{kind}/{page}.html", 3, args.conns, [])
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        keys = [(page, t) for page in files for t in targets]
        for rnd in range(args.rounds):
            order = keys[rnd % len(keys) :] + keys[: rnd % len(keys)]
            for page, target in order:
                port, kind = targets[target]
                r = run_wrk(f"http://127.0.0.1:{port}/{kind}/{page}.html", args.seconds, args.conns, [])
                results.setdefault((page, target), []).append(r)
                print(
                    f"round {rnd + 1} {page:>5} {target:14} {r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms"
                    f"  p99 {r['p99']:7.2f} ms{'  ERRORS' if r['errors'] else ''}",
                    flush=True,
                )
                time.sleep(0.5)

        summary: dict[str, dict[str, float]] = {}
        print(
            f"\nmedians over {args.rounds} rounds, {args.seconds} s each, {args.conns} connections "
            "(server under test on CPU 1; wrk and origin on CPU 0)"
        )
        print(
            f"{'page':>5} {'target':14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'req/s vs nginx':>15} {'p50 x':>6} {'p99 x':>6}"
        )
        for page in files:
            base = results[(page, "nginx")]
            b_rps = statistics.median(r["rps"] for r in base)
            b_p50 = statistics.median(r["p50"] for r in base)
            b_p99 = statistics.median(r["p99"] for r in base)
            for target in targets:
                rs = results[(page, target)]
                rps = statistics.median(r["rps"] for r in rs)
                p50 = statistics.median(r["p50"] for r in rs)
                p99 = statistics.median(r["p99"] for r in rs)
                summary[f"{page}/{target}"] = {
                    "rps": rps,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "rps_ratio": rps / b_rps,
                }
                print(
                    f"{page:>5} {target:14} {rps:9.0f} {p50:8.2f} {p99:8.2f} {rps / b_rps:15.2f}"
                    f" {p50 / b_p50:6.1f} {p99 / b_p99:6.1f}"
                )
        if args.html:
            for page in files:
                gate, anchor = summary[f"{page}/tag-gate-html"]["rps"], summary[f"{page}/anchor-html"]["rps"]
                print(f"{page:>5} tag-gate-html / anchor-html: {gate / anchor:.2f}x")
        if args.compare:
            for page in files:
                for kind in ("tag-gate", "tag-gate-html") if args.html else ("tag-gate",):
                    now, then = (
                        summary[f"{page}/{kind}"]["rps_ratio"],
                        summary[f"{page}/{kind}@{args.compare}"]["rps_ratio"],
                    )
                    print(
                        f"{page:>5} {kind} vs nginx: {now:.3f}x now, {then:.3f}x at {args.compare}"
                        f" ({now / then - 1:+.1%})"
                    )
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
    finally:
        for p in procs:
            program = p.args[0] if isinstance(p.args, list | tuple) else p.args
            p.send_signal(signal.SIGTERM if program != nginx_bin() else signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if args.compare:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(scratch / "compare")], check=False
            )
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
