"""Memory benchmark: tag-gate's resident set size idle and with many keep-alive connections.

The figures size a container's memory request and limit (deploy/kubernetes/). Each
round starts a fresh `tag-gate serve` (built-in defaults, or --config FILE) in front of
an aiohttp origin in this process that serves the 2 KB and 100 KB pages of pages.py as
HTML, so every response goes through the gate (no consent: every tag is acted on).
Figures per round, read from /proc/PID/status (VmRSS):

  start      ready, no request served yet
  idle       after a warm-up (20 requests of each page on one connection), no connection open
  conns      N connections open and idle in keep-alive, each having fetched the 2 KB page
  burst      peak while the same N connections fetch the 100 KB page all at once
  after      when the burst has been answered, connections still open
  closed     2 s after every connection was closed

Per connection = (conns - idle) / N. The medians over the rounds are printed.

Usage:  python bench/memory_bench.py [--rounds 3] [--conns 500] [--config FILE]
Runs on 127.0.0.1 only; needs a file-descriptor limit above N + 100.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages

REPO = Path(__file__).resolve().parent.parent
STAGES = ("start", "idle", "conns", "burst", "after", "closed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); return the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nAccept: text/html\r\n\r\n".encode()


async def fetch(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str) -> None:
    reader, writer = conn
    writer.write(request(path))
    status = await asyncio.wait_for(read_response(reader), 60)
    if status != 200:
        raise RuntimeError(f"{path}: status {status}")


async def wait_ready(admin: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("tag-gate exited before it was ready")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            conn = await asyncio.open_connection("127.0.0.1", admin)
            conn[1].write(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            status = await read_response(conn[0])
            conn[1].close()
            if status == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("tag-gate not ready within 15 s")


async def one_round(origin: int, conns: int, config: str | None) -> dict[str, int]:
    port, admin = free_port(), free_port()
    command = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--upstream", f"http://127.0.0.1:{origin}", "--admin-listen", f"127.0.0.1:{admin}"]
    command += ["--log-level", "warning"] + (["--config", config] if config else [])
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    figures: dict[str, int] = {}
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await wait_ready(admin, proc)
        await asyncio.sleep(0.5)
        figures["start"] = rss_kib(proc.pid)
        warm = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(20):
            await fetch(warm, "/small.html")
            await fetch(warm, "/page.html")
        warm[1].close()
        await asyncio.sleep(1.0)
        figures["idle"] = rss_kib(proc.pid)

        async def open_and_fetch() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            conn = await asyncio.open_connection("127.0.0.1", port)
            opened.append(conn)
            await fetch(conn, "/small.html")
            return conn

        # In batches: a connection must send its request within timeouts.header (10 s).
        for start in range(0, conns, 250):
            await asyncio.gather(*(open_and_fetch() for _ in range(min(250, conns - start))))
        await asyncio.sleep(1.0)
        figures["conns"] = rss_kib(proc.pid)
        peak = 0
        burst = asyncio.ensure_future(asyncio.gather(*(fetch(conn, "/page.html") for conn in opened)))
        while not burst.done():
            peak = max(peak, rss_kib(proc.pid))
            await asyncio.sleep(0.01)
        await burst
        figures["burst"] = max(peak, rss_kib(proc.pid))
        await asyncio.sleep(1.0)
        figures["after"] = rss_kib(proc.pid)
        for _, writer in opened:
            writer.close()
        opened.clear()
        await asyncio.sleep(2.0)
        figures["closed"] = rss_kib(proc.pid)
    finally:
        for _, writer in opened:
            writer.close()
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return figures


async def run(rounds: int, conns: int, config: str | None) -> list[dict[str, int]]:
    bodies = {"/small.html": pages.make_small_page(), "/page.html": pages.make_page(100 * 1024)}

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.path], content_type="text/html", charset="utf-8")

    app = web.Application()
    for path in bodies:
        app.router.add_get(path, serve_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    origin = free_port()
    site = web.TCPSite(runner, "127.0.0.1", origin, backlog=4096)
    await site.start()
    try:
        results = []
        for i in range(rounds):
            figures = await one_round(origin, conns, config)
            print(f"round {i + 1}: " + "  ".join(f"{k} {v / 1024:.1f} MiB" for k, v in figures.items()), flush=True)
            results.append(figures)
        return results
    finally:
        await runner.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=500)
    ap.add_argument("--config", metavar="FILE", help="tag-gate config (addresses are overridden)")
    args = ap.parse_args()
    results = asyncio.run(run(args.rounds, args.conns, args.config))
    medians = {k: statistics.median(r[k] for r in results) / 1024 for k in STAGES}
    print(f"\nmedians over {args.rounds} rounds, {args.conns} connections (MiB RSS):")
    for k in STAGES:
        print(f"  {k:7s} {medians[k]:6.1f}")
    per_conn = (medians["conns"] - medians["idle"]) * 1024 / args.conns
    print(f"  per keep-alive connection: {per_conn:.1f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
