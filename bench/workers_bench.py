"""Workers benchmark: `tag-gate serve --workers 2` against `--workers 1`, interleaved.

Method (as proxy_bench.py, ../shared/docs/perf-anchors.md §2): an origin nginx (one
worker) serves the realistic 100 KB page of pages.py as HTML, so every response goes
through the gate with no consent (every tag acted on); wrk (`-t1`) and the origin are
pinned to CPU 0. The two tag-gate instances (built-in defaults, access log to
/dev/null) are not pinned: on a 2-core machine one worker of `--workers 2` shares CPU 0
with wrk and the origin, which is as far as the machine allows. Every round runs both,
in alternating order; the figures are medians over the rounds.

Per run: req/s (wrk), and the CPU seconds tag-gate used per 1,000 requests: user +
system time of the whole process tree (the supervisor and every worker, or the one
process), from /proc/PID/stat before and after the run, over the requests wrk counted.
Before the runs: the resident set (VmRSS) of each process once started, and again after
a warm-up and 2 s idle.

With --pinned, a third instance, `--workers 1` pinned to CPU 1 (proxy_bench.py's setup: a
core of its own, which a single process in a shared pod does not get), runs in the same
rounds for reference.

Usage:  python bench/workers_bench.py [--rounds 5] [--seconds 10] [--conns 50] [--workers 2] [--pinned]
Needs nginx and wrk (proxy_bench.py installs them with apt-get); runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages
import proxy_bench
from proxy_bench import free_port, nginx_bin, origin_conf, parse_wrk, wait_port

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its children (a supervisor's workers)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(k) for k in kids)]


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of `pid` (and its live children), in seconds."""
    total = 0
    for p in tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_tag_gate(port: int, admin: int, origin: int, workers: int, cpus: str | None) -> subprocess.Popen[bytes]:
    command = ["taskset", "-c", cpus] if cpus else []
    command += [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}", "--workers", str(workers)]
    command += ["--upstream", f"http://127.0.0.1:{origin}", "--admin-listen", f"127.0.0.1:{admin}"]
    command += ["--log-level", "warning"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))


def wait_ready(admin: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{admin}/readyz"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.stdout == "200":
            return
        time.sleep(0.1)
    raise RuntimeError("tag-gate not ready")


def run_wrk(url: str, seconds: int, conns: int) -> dict[str, float]:
    cmd = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    result = parse_wrk(out)
    match = re.search(r"(\d+) requests in", out)
    result["requests"] = float(match.group(1)) if match else 0.0
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="the worker count compared with --workers 1")
    ap.add_argument(
        "--cpus",
        metavar="LIST",
        help="pin both instances to these CPUs (taskset -c LIST); `1` puts both workers on one core, which "
        "isolates what the worker machinery costs per request from what running in parallel costs",
    )
    ap.add_argument(
        "--pinned",
        action="store_true",
        help="also run --workers 1 pinned to CPU 1 (proxy_bench.py's setup: a core of its own)",
    )
    args = ap.parse_args()
    proxy_bench.ensure_tools()

    scratch = Path(tempfile.mkdtemp(prefix="tag-gate-wbench-"))
    www, run = scratch / "www", scratch / "run"
    (www / "html").mkdir(parents=True)
    run.mkdir()
    for folder in (scratch, www, www / "html", run):
        folder.chmod(0o755)
    (www / "html" / "100KB.html").write_bytes(pages.make_page(100 * 1024))
    origin_port = free_port()
    cpus = args.cpus
    targets: dict[str, tuple[int, str | None]] = {"--workers 1": (1, cpus)}
    targets[f"--workers {args.workers}"] = (args.workers, cpus)
    if args.pinned:
        targets["--workers 1, CPU 1"] = (1, "1")
    counts = tuple(targets)
    ports = {n: (free_port(), free_port()) for n in counts}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        origin = origin_conf(run, www, origin_port, ("html",))
        procs.append(subprocess.Popen([nginx_bin(), "-c", str(origin), "-e", str(run / "nginx-stderr.log")]))
        wait_port(origin_port)
        servers = {}
        for n in counts:
            servers[n] = start_tag_gate(*ports[n], origin_port, *targets[n])
            procs.append(servers[n])
        for n in counts:
            wait_ready(ports[n][1])
        time.sleep(1.0)
        started = {n: [rss_mib(p) for p in tree(servers[n].pid)] for n in counts}
        print("warm-up: 3 s each", flush=True)
        for n in counts:
            run_wrk(f"http://127.0.0.1:{ports[n][0]}/html/100KB.html", 3, args.conns)
        time.sleep(2.0)
        idle = {n: [rss_mib(p) for p in tree(servers[n].pid)] for n in counts}
        results: dict[str, list[dict[str, float]]] = {n: [] for n in counts}
        for rnd in range(args.rounds):
            order = counts[rnd % len(counts) :] + counts[: rnd % len(counts)]
            if rnd % 2:
                order = order[::-1]
            for n in order:
                pid = servers[n].pid
                before, own_before = cpu_seconds(pid), cpu_seconds(pid, children=False)
                r = run_wrk(f"http://127.0.0.1:{ports[n][0]}/html/100KB.html", args.seconds, args.conns)
                used, own = cpu_seconds(pid) - before, cpu_seconds(pid, children=False) - own_before
                r["cpu_per_1000"] = used / r["requests"] * 1000 if r["requests"] else 0.0
                r["top_per_1000"] = own / r["requests"] * 1000 if r["requests"] else 0.0
                r["cpu_share"] = used / args.seconds
                results[n].append(r)
                print(
                    f"round {rnd + 1} {n:18}: {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  "
                    f"p99 {r['p99']:7.2f} ms  {r['cpu_per_1000']:.3f} CPU s per 1,000 requests"
                    f" (of which the first process {r['top_per_1000']:.3f})"
                    f"{'  ERRORS' if r['errors'] else ''}",
                    flush=True,
                )
                time.sleep(0.5)
        print(
            f"\nmedians over {args.rounds} rounds, {args.seconds} s each, wrk -c{args.conns}, gated 100 KB page "
            f"(wrk and the origin on CPU 0; tag-gate {f'on CPUs {cpus}' if cpus else 'not pinned'})"
        )
        base = statistics.median(r["rps"] for r in results[counts[0]])
        for n in counts:
            rs = results[n]
            rps = statistics.median(r["rps"] for r in rs)
            p99 = statistics.median(r["p99"] for r in rs)
            print(
                f"  {n:18}: {rps:8.0f} req/s ({rps / base:.2f}x)  p99 {p99:6.2f} ms"
                f"  CPU {statistics.median(r['cpu_per_1000'] for r in rs):.3f} s per 1,000 requests"
                f" (supervisor {statistics.median(r['top_per_1000'] for r in rs):.3f})"
                f"  (tag-gate busy {statistics.median(r['cpu_share'] for r in rs):.2f} CPUs)"
            )
        print("\nresident set (MiB), first the supervisor or the single process, then each worker:")
        for n in counts:
            print(
                f"  {n:18}: started {', '.join(f'{v:.1f}' for v in started[n])};"
                f" idle after warm-up {', '.join(f'{v:.1f}' for v in idle[n])}"
            )
    finally:
        for p in procs:
            program = p.args[0] if isinstance(p.args, list | tuple) else p.args
            p.send_signal(signal.SIGTERM if program != nginx_bin() else signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
