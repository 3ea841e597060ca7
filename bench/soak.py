"""Soak: tag-gate under mixed traffic with injected faults, for a bounded time, watched.

An origin (`soak_origin.py`, its own process) serves small and 100 KB HTML pages with
trackers, a gzip-encoded page, a chunked HTML stream, 1-8 MiB downloads, chunked binary
streams, slow responses, a response reset mid-body, 5xx errors, an upload sink and a
WebSocket echo. tag-gate runs in front of it with its built-in defaults (no consent
cookie: every non-essential category refused). A pool of asyncio clients (`--conns`,
default 32) then drives a weighted mix for `--seconds` (or `--minutes`):

  pages with and without consent cookies (a new visitor's cookies every time, or one of
  `--visitors N`), kept alive and not; gzip and chunked pages; fast and slow readers of
  large downloads; clients that reset mid-response (SO_LINGER 0, then close); uploads,
  some slow; HEAD; the origin's mid-body reset and 5xx; slow origin responses; malformed
  requests (some quoting '%s' back in the parser's error) and a target holding '%s%d';
  WebSocket echo. A quarter of the clients run only the slow exchanges.

Every second it samples tag-gate's RSS (/proc/PID/status VmRSS) and open file
descriptors (/proc/PID/fd), and it reads /metrics on the admin listener at the start
and end. After the traffic it waits (at most `--settle` seconds) for idle connections
to close and the descriptor count to come back to its baseline.

The summary gives requests by scenario and outcome (ok; expected: the injected faults
and 5xx; unexpected: anything else), requests per second, RSS at start / after the
warm-up / max / end with the slope over the second half of the run (MiB per minute),
descriptors at start / max / after settling, the metric counters' change and the count
of tag-gate stderr lines with "Traceback", "Logging error" or "never retrieved".

Checks: RSS growth over the second half (the fitted slope times the half's length)
within `--max-growth` MiB (RSS rises for the first minutes while tag-gate's memo tables,
bounded by entries, fill with visitor cookies: judge the slope on 5-minute runs);
descriptors back within `--fd-slack` of the baseline; no such stderr lines; no
unexpected outcomes. A failed check prints "FAIL: ..."; with --strict the exit status
is then 1. tag-gate or the origin dying is always exit 2.

Usage:  python bench/soak.py [--seconds 60 | --minutes 5] [--conns 32] [--strict]
tag-gate is pinned to CPU 1, the origin and the clients to CPU 0 (--no-pin to not).
Everything runs on 127.0.0.1; every process started is killed at the end, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp
import uvloop
from aiohttp import hdrs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak_origin

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
CONSENT_ALL = "tg_consent=analytics.advertising.social.functional"
TRACKER = b"googletagmanager.com/gtag/js"
"""On every test page; present only when analytics is granted."""
DOWNLOAD_SIZES = (1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB, 6 * MiB, 8 * MiB)
STDERR_ALARMS = ("Traceback", "Logging error", "never retrieved")
SCENARIO_TIMEOUT = 30.0


class Unexpected(Exception):
    """A scenario saw something tag-gate should never do (wrong status, lost bytes, a hang)."""


class Expected(Exception):
    """A scenario met the failure it injected (the origin's reset, a 5xx, a refused malformed request)."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout:.0f} s")


def pinned(cpu: int | None, command: list[str]) -> list[str]:
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then SIGKILL what is still running after 10 s."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def commit_id() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "proxy"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty (proxy/)" if dirty else "")


# --------------------------------------------------------------------------- sampling


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sample:
    t: float
    """Seconds since the traffic started (the baseline sample, taken just before, has 0)."""
    rss_kib: int
    fds: int


async def sample_until(pid: int, started: float, stop_event: asyncio.Event, out: list[Sample]) -> None:
    while not stop_event.is_set():
        try:
            out.append(Sample(time.monotonic() - started, rss_kib(pid), open_fds(pid)))
        except (OSError, RuntimeError):
            return  # the process is gone; the caller notices
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), 1.0)


_METRIC = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$")


async def read_metrics(admin_port: int) -> dict[str, float]:
    """Counters (`*_total`) and gauges of tag-gate's /metrics; histogram series left out."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{admin_port}/metrics", headers={hdrs.CONNECTION: "close"}) as resp,
    ):
        text = await resp.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m or m.group(1).endswith(("_created", "_bucket", "_sum", "_count")):
            continue
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


# --------------------------------------------------------------------------- traffic


@dataclass
class Tally:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    """Unexpected outcomes by scenario and reason."""
    expected: Counter[str] = field(default_factory=Counter)
    """Expected outcomes by scenario and what was seen."""


@dataclass
class Client:
    port: int
    rng: random.Random
    keep: aiohttp.ClientSession
    """Keep-alive session (its own small pool per client)."""
    close: aiohttp.ClientSession
    """A fresh connection for every request."""
    digests: dict[int, str]
    visitors: int
    """How many distinct visitors (Cookie headers) there are; 0: a new one every request."""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def session(self) -> aiohttp.ClientSession:
        return self.keep if self.rng.random() < 0.75 else self.close

    def visitor(self, consent: bool) -> dict[str, str]:
        """The Cookie header of a visitor (with or without consent), a new one or one of `visitors`."""
        who = self.rng.randrange(self.visitors) if self.visitors else self.rng.getrandbits(62)
        cookies = f"_ga=GA1.1.{who % 999983}.{who // 999983}; sid={who * 2654435761 % 2**64:x}"
        if consent:
            cookies = f"{CONSENT_ALL}; {cookies}"
        return {hdrs.COOKIE: cookies} if self.rng.random() < 0.8 or consent else {}


async def expect_page(c: Client, path: str, consent: bool, extra: dict[str, str] | None = None) -> None:
    headers = {**c.visitor(consent), **(extra or {})}
    async with c.session().get(c.url(path), headers=headers) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise Unexpected(f"status {resp.status}")
    if consent and TRACKER not in body:
        raise Unexpected("consent granted, tracker missing")
    if not consent and TRACKER in body:
        raise Unexpected("no consent, tracker still there")
    if len(body) < 1000:
        raise Unexpected(f"page of {len(body)} bytes")


async def page_small(c: Client) -> None:
    await expect_page(c, "/page/small", consent=c.rng.random() < 0.4)


async def page_100k(c: Client) -> None:
    await expect_page(c, "/page/100k", consent=c.rng.random() < 0.4)


async def page_gzip(c: Client) -> None:
    await expect_page(c, "/page/gzip", consent=c.rng.random() < 0.4, extra={hdrs.ACCEPT_ENCODING: "gzip"})


async def page_stream(c: Client) -> None:
    await expect_page(c, "/page/stream", consent=c.rng.random() < 0.4)


async def read_at(resp: aiohttp.ClientResponse, rate: float) -> tuple[int, str]:
    """Read the body at about `rate` bytes/s in 16 KiB steps; its length and sha256."""
    digest = hashlib.sha256()
    got = 0
    started = time.monotonic()
    async for chunk in resp.content.iter_chunked(16384):
        digest.update(chunk)
        got += len(chunk)
        ahead = got / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    return got, digest.hexdigest()


async def download(c: Client, size: int, rate: float) -> None:
    async with c.session().get(c.url(f"/download/{size}")) as resp:
        if resp.status != 200:
            raise Unexpected(f"status {resp.status}")
        got, digest = await read_at(resp, rate)
    if got != size or digest != c.digests[size]:
        raise Unexpected(f"{got} of {size} bytes" if got != size else "body differs")


async def download_fast(c: Client) -> None:
    await download(c, c.rng.choice(DOWNLOAD_SIZES), math.inf)


async def download_slow_reader(c: Client) -> None:
    # 1-4 MiB at 1-3 MiB/s: the proxy has to hold the origin back for 1-4 s.
    await download(c, c.rng.choice(DOWNLOAD_SIZES[:4]), c.rng.uniform(1, 3) * MiB)


async def chunked(c: Client) -> None:
    n = c.rng.randint(4, 64)
    async with c.session().get(c.url(f"/chunked/{n}")) as resp:
        body = await resp.read()
        if resp.status != 200 or len(body) != n * 32768:
            raise Unexpected(f"status {resp.status}, {len(body)} of {n * 32768} bytes")


async def slow_origin(c: Client) -> None:
    async with c.session().get(c.url(f"/slow?ms={c.rng.randint(200, 2000)}")) as resp:
        body = await resp.read()
        if resp.status != 200 or len(body) != 8 * 4096:
            raise Unexpected(f"status {resp.status}, {len(body)} bytes")


async def head(c: Client) -> None:
    path = c.rng.choice(("/page/100k", "/page/small", f"/download/{c.rng.choice(DOWNLOAD_SIZES)}"))
    async with c.session().head(c.url(path), headers=c.visitor(False)) as resp:
        body = await resp.read()
        if resp.status != 200 or body:
            raise Unexpected(f"HEAD {path}: status {resp.status}, {len(body)} body bytes")


async def upload(c: Client, size: int, piece: int, pause: float) -> None:
    data = c.rng.randbytes(size)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, size, piece):
            if i and pause:
                await asyncio.sleep(pause)
            yield data[i : i + piece]

    async with c.session().post(c.url("/upload"), data=body()) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise Unexpected(f"status {resp.status}")
    answer = json.loads(text)
    if answer != {"bytes": size, "sha256": hashlib.sha256(data).hexdigest()}:
        raise Unexpected(f"the origin received {answer['bytes']} of {size} bytes or different ones")


async def upload_fast(c: Client) -> None:
    await upload(c, c.rng.randint(16 * 1024, 2 * MiB), 65536, 0.0)


async def upload_slow(c: Client) -> None:
    # About 512 KB in 16 KiB pieces every 50 ms: 1.6 s of trickle.
    await upload(c, c.rng.randint(256 * 1024, 512 * 1024), 16384, 0.05)


async def origin_reset(c: Client) -> None:
    path = "/reset?html=1" if c.rng.random() < 0.5 else "/reset"
    try:
        async with c.session().get(c.url(path), headers=c.visitor(False)) as resp:
            await resp.read()
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise Expected(f"cut: {type(exc).__name__}") from exc
    raise Unexpected(f"{path}: status {resp.status}, the body ended cleanly despite the origin's reset")


async def origin_error(c: Client) -> None:
    status = c.rng.choice((500, 502, 503))
    async with c.session().get(c.url(f"/error?status={status}")) as resp:
        await resp.read()
        if resp.status != status:
            raise Unexpected(f"status {resp.status}, origin sent {status}")
    raise Expected(f"status {status}")


async def websocket(c: Client) -> None:
    async with c.keep.ws_connect(c.url("/ws"), heartbeat=None, autoping=True) as ws:
        for i in range(c.rng.randint(1, 8)):
            if i % 2:
                payload = c.rng.randbytes(c.rng.randint(1, 65536))
                await ws.send_bytes(payload)
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.BINARY or msg.data != payload:
                    raise Unexpected(f"binary echo: {msg.type.name}")
            else:
                text = f"hello {i} " * c.rng.randint(1, 100)
                await ws.send_str(text)
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT or msg.data != text:
                    raise Unexpected(f"text echo: {msg.type.name}")


def linger_reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a browser tab killed mid-download does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


CLIENT_RESETS = (
    # (path, bytes of the response to read before the reset: all below its length)
    ("/download/8388608", (0, 1, 65536, 1048576, 4194304)),
    ("/chunked/64", (0, 1, 65536, 1048576)),
    ("/page/stream", (0, 1, 4096, 65536)),
    ("/page/100k", (0, 1, 4096, 16384)),
    ("/slow?ms=300", (0, 1, 4096)),
)


async def client_reset(c: Client) -> None:
    path, cuts = c.rng.choice(CLIENT_RESETS)
    cut_after = c.rng.choice(cuts)
    reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: shop.example\r\nCookie: sid={c.rng.getrandbits(64):x}\r\n\r\n".encode()
        )
        got = 0
        while got < cut_after:
            data = await reader.read(65536)
            if not data:
                raise Unexpected(f"{path}: closed after {got} bytes")
            got += len(data)
        if not cut_after:
            await asyncio.sleep(c.rng.uniform(0, 0.05))
    finally:
        linger_reset(writer)
    raise Expected("reset by the client" + (" before the answer" if not cut_after else " mid-body"))


MALFORMED = (
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /\x01x HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 1, 2\r\n\r\nab",
    b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"BREW /pot HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",
    # Client bytes that look like format directives, in the part the parser's error quotes.
    b"GET /a%s%d\x01 HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nBad%s Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Note: \x01%(name)s%d\r\n\r\n",
)
ODD_BUT_VALID = (
    b"GET /a%s%d%n%x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    b"GET /%25s%25(x)s?q=%s HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: %s%s%s\r\nConnection: close\r\n\r\n",
)


async def raw_exchange(port: int, request: bytes) -> int | None:
    """Send raw bytes, read the answer's status; None when the connection closes without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), 15)
        except ConnectionError:
            return None
        except TimeoutError as exc:
            raise Unexpected("no answer within 15 s") from exc
        if not line:
            return None
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
        if not m:
            raise Unexpected(f"not a status line: {line[:60]!r}")
        return int(m.group(1))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def malformed(c: Client) -> None:
    request = c.rng.choice(MALFORMED)
    status = await raw_exchange(c.port, request)
    if status is None:
        raise Expected("closed")
    if 400 <= status < 500 or status in (501, 505):
        raise Expected(f"status {status}")
    raise Unexpected(f"{request[:30]!r}: status {status}")


async def odd_target(c: Client) -> None:
    status = await raw_exchange(c.port, c.rng.choice(ODD_BUT_VALID))
    if status is None or status >= 500:
        raise Unexpected(f"status {status}")


Scenario = Callable[[Client], Awaitable[None]]
QUICK: dict[str, tuple[int, Scenario]] = {
    # name: (weight, scenario). Exchanges that end within milliseconds when all is well.
    "page 2 KB": (14, page_small),
    "page 100 KB": (12, page_100k),
    "page gzip": (6, page_gzip),
    "page chunked": (4, page_stream),
    "download": (2, download_fast),
    "HEAD": (5, head),
    "upload": (3, upload_fast),
    "client reset": (5, client_reset),
    "origin reset": (3, origin_reset),
    "origin 5xx": (3, origin_error),
    "malformed": (3, malformed),
    "'%s' target": (1, odd_target),
    "websocket": (2, websocket),
}
SLOW: dict[str, tuple[int, Scenario]] = {
    # Exchanges that take 0.2-4 s by design: a quarter of the clients run only these, so
    # long-lived connections are always open while the others keep the proxy busy.
    "download, slow reader": (3, download_slow_reader),
    "binary chunked": (2, chunked),
    "slow origin": (3, slow_origin),
    "upload, slow": (2, upload_slow),
}
SCENARIOS = {**QUICK, **SLOW}


async def client_loop(c: Client, lane: dict[str, tuple[int, Scenario]], deadline: float, tally: Tally) -> None:
    names = list(lane)
    weights = [lane[n][0] for n in names]
    while time.monotonic() < deadline:
        name = c.rng.choices(names, weights)[0]
        started = time.monotonic()
        try:
            async with asyncio.timeout(SCENARIO_TIMEOUT):
                await lane[name][1](c)
            outcome = "ok"
        except Expected as exc:
            outcome = "expected"
            tally.expected[f"{name}: {exc}"] += 1
        except Unexpected as exc:
            outcome = "unexpected"
            tally.reasons[f"{name}: {exc}"] += 1
        except TimeoutError:
            outcome = "unexpected"
            tally.reasons[f"{name}: no end within {SCENARIO_TIMEOUT:.0f} s"] += 1
        except Exception as exc:  # the loop must go on: every failure is a figure
            outcome = "unexpected"
            tally.reasons[f"{name}: {type(exc).__name__}: {str(exc)[:100]}"] += 1
        tally.outcomes[(name, outcome)] += 1
        tally.latencies.setdefault(name, []).append(time.monotonic() - started)


async def drive(port: int, conns: int, seconds: float, seed: int, visitors: int, tally: Tally) -> None:
    digests = {size: soak_origin.blob_digest(size) for size in DOWNLOAD_SIZES}
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=SCENARIO_TIMEOUT, sock_connect=10)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i in range(conns):
            keep = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=2),
                    timeout=timeout,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
            )
            close = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True),
                    timeout=timeout,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
            )
            clients.append(Client(port, random.Random(seed * 1000 + i), keep, close, digests, visitors))
        # Scenarios are bounded by SCENARIO_TIMEOUT, so this never waits past it.
        slow = max(1, conns // 4) if conns > 1 else 0
        lanes = [SLOW if i < slow else QUICK for i in range(conns)]
        await asyncio.gather(*(client_loop(c, lane, deadline, tally) for c, lane in zip(clients, lanes, strict=True)))


# --------------------------------------------------------------------------- report


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def p99_ms(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def slope_mib_per_min(samples: list[Sample]) -> float:
    if len(samples) < 3:
        return float("nan")
    fit = statistics.linear_regression([s.t for s in samples], [s.rss_kib / 1024 for s in samples])
    return fit.slope * 60


def alarm_blocks(lines: list[str]) -> tuple[Counter[str], Counter[str]]:
    """Counts of the lines holding each alarm string, and the distinct alarms with what
    names them: the exception ending a traceback, the message a logging error failed on."""
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    in_logging_error = False
    for i, line in enumerate(lines):
        for alarm in STDERR_ALARMS:
            if alarm in line:
                counts[alarm] += 1
        ahead = lines[i + 1 : i + 80]
        if "Logging error" in line:
            in_logging_error = True
            message = next((x for x in ahead if x.startswith("Message:")), "")
            exception = next((x for x in ahead if re.match(r"^\w+(Error|Exception):", x)), "")
            kinds[f"Logging error: {exception[:60]}; {re.sub(r'[0-9]+', 'N', message)[:100]}"] += 1
        elif "never retrieved" in line:
            m = re.search(r"\w+ exception was never retrieved", line)
            exception = next((x for x in ahead if re.match(r"^[\w.]+(Error|Exception|Exit)\b", x)), "")
            kinds[f"{m.group(0) if m else line[:60]}: {exception[:120]}"] += 1
        elif "Traceback" in line:
            if in_logging_error:
                in_logging_error = False  # the logging error's own traceback, named above
                continue
            exception = next((x for x in ahead if x and not x.startswith((" ", "Traceback"))), "")
            kinds[f"Traceback: {exception[:120]}"] += 1
    return counts, kinds


def warning_kinds(lines: list[str]) -> Counter[str]:
    """WARNING/ERROR lines by message, with paths and numbers blanked."""
    kinds: Counter[str] = Counter()
    for line in lines:
        m = re.search(r" (WARNING|ERROR|CRITICAL) (\S+): (.*)$", line)
        if m:
            message = re.sub(r" for (GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS)? ?\S+", " for <request>", m.group(3))
            message = re.sub(r"\d+", "N", message)
            kinds[f"{m.group(1)} {m.group(2)}: {message[:140]}"] += 1
    return kinds


@dataclass
class Limits:
    max_growth_mib: float
    fd_slack: int
    max_unexpected: int


def report(run: Run, seconds: float, warmup: float, stderr_lines: list[str], limits: Limits) -> list[str]:
    """Print the summary; return the failed checks."""
    tally, samples, settled, before, after = run.tally, run.samples, run.settled, run.before, run.after
    failures: list[str] = []
    names = list(SCENARIOS)
    print(f"\n{'scenario':22} {'ok':>7} {'expected':>9} {'unexpected':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for name in names:
        lat = tally.latencies.get(name, [])
        ok, exp, bad = (tally.outcomes[(name, o)] for o in ("ok", "expected", "unexpected"))
        print(f"{name:22} {ok:7d} {exp:9d} {bad:11d} {median_ms(lat):8.1f} {p99_ms(lat):8.1f}")
    totals = {o: sum(n for (_, out), n in tally.outcomes.items() if out == o) for o in ("ok", "expected", "unexpected")}
    total = sum(totals.values())
    print(f"{'total':22} {totals['ok']:7d} {totals['expected']:9d} {totals['unexpected']:11d}")
    print(
        f"\n{total} requests in {seconds:.0f} s (the last ended at {run.traffic_end:.1f} s): "
        f"{total / run.traffic_end:.0f} per second (a WebSocket session counts one)"
    )
    if tally.expected:
        print("expected outcomes:")
        for what, n in sorted(tally.expected.items()):
            print(f"  {n:6d}  {what}")
    if tally.reasons:
        print("unexpected outcomes:")
        for reason, n in tally.reasons.most_common(15):
            print(f"  {n:6d}  {reason}")
    if totals["unexpected"] > limits.max_unexpected:
        failures.append(f"{totals['unexpected']} unexpected outcomes (allowed {limits.max_unexpected})")

    traffic = [s for s in samples if 0 <= s.t <= seconds]
    start = samples[0]
    warmed = next((s for s in traffic if s.t >= warmup), start)
    peak = max(samples, key=lambda s: s.rss_kib)
    end = samples[-1]
    half = [s for s in traffic if s.t >= seconds / 2]
    slope = slope_mib_per_min(half)
    growth = slope * (seconds / 2) / 60
    print(
        f"\ntag-gate RSS (MiB): start {start.rss_kib / 1024:.1f}, after warm-up ({warmup:.0f} s) "
        f"{warmed.rss_kib / 1024:.1f}, max {peak.rss_kib / 1024:.1f} (at {peak.t:.0f} s), "
        f"end {end.rss_kib / 1024:.1f} (at {end.t:.0f} s)"
    )
    print(
        f"  second half ({len(half)} samples): slope {slope:+.2f} MiB/min, fitted growth {growth:+.1f} MiB "
        f"(allowed {limits.max_growth_mib:.0f})"
    )
    if not math.isnan(growth) and growth > limits.max_growth_mib:
        failures.append(
            f"RSS grew {growth:.1f} MiB in the second half ({slope:+.2f} MiB/min; allowed {limits.max_growth_mib:.0f})"
        )

    baseline = samples[0].fds
    fd_peak = max(s.fds for s in samples)
    last = settled[-1] if settled else samples[-1]
    settle_time = last.t - run.traffic_end
    print(
        f"tag-gate open fds: start {baseline}, max {fd_peak}, after the run {last.fds} "
        f"({settle_time:.0f} s after the traffic stopped; allowed {baseline + limits.fd_slack})"
    )
    if last.fds > baseline + limits.fd_slack:
        failures.append(f"{last.fds} fds open {settle_time:.0f} s after the run (baseline {baseline})")

    print("\ntag-gate metrics, change over the run:")
    for key in sorted(set(before) | set(after)):
        delta = after.get(key, 0.0) - before.get(key, 0.0)
        if key.endswith("_total") or "_total{" in key:
            if delta:
                print(f"  {key:70} {delta:+10.0f}")
        elif key.startswith(("tag_gate_in_flight", "tag_gate_websockets_open")):
            print(f"  {key:70} {after.get(key, 0.0):10.0f} at the end")

    counts, kinds = alarm_blocks(stderr_lines)
    print(
        f"\ntag-gate stderr: {len(stderr_lines)} lines; "
        + ", ".join(f'"{alarm}" {counts[alarm]}' for alarm in STDERR_ALARMS)
    )
    for kind, n in kinds.most_common(10):
        print(f"  {n:6d}  {kind}")
    for kind, n in warning_kinds(stderr_lines).most_common(12):
        print(f"  {n:6d}  {kind}")
    if sum(counts.values()):
        failures.append(
            "tag-gate stderr has " + ", ".join(f'{counts[a]} "{a}"' for a in STDERR_ALARMS if counts[a]) + " lines"
        )
    return failures


# --------------------------------------------------------------------------- main


@dataclass
class Run:
    tally: Tally = field(default_factory=Tally)
    samples: list[Sample] = field(default_factory=list)
    """The first before any traffic, then one a second, the last when the clients are done."""
    settled: list[Sample] = field(default_factory=list)
    """After the traffic, until the descriptors are back or --settle runs out."""
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    traffic_end: float = 0.0
    """When the last client finished (its last scenario may outlast --seconds)."""


async def soak(args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int, admin: int) -> Run:
    run = Run()
    samples, settled, tally = run.samples, run.settled, run.tally
    run.before = await read_metrics(admin)
    await asyncio.sleep(0.3)  # the admin connection's descriptor closes
    started = time.monotonic()
    samples.append(Sample(0.0, rss_kib(proc.pid), open_fds(proc.pid)))
    stop_sampling = asyncio.Event()
    sampler = asyncio.ensure_future(sample_until(proc.pid, started, stop_sampling, samples))
    try:
        async with asyncio.timeout(args.seconds + SCENARIO_TIMEOUT + 30):
            await drive(port, args.conns, args.seconds, args.seed, args.visitors, tally)
    finally:
        stop_sampling.set()
        await sampler
    if proc.poll() is not None:
        raise RuntimeError(f"tag-gate exited with status {proc.returncode} during the soak")
    run.traffic_end = time.monotonic() - started
    samples.append(Sample(run.traffic_end, rss_kib(proc.pid), open_fds(proc.pid)))
    run.after = await read_metrics(admin)
    # Idle kept-alive connections (the upstream pool's, after timeouts.upstream_idle) close.
    settle_deadline = time.monotonic() + args.settle
    while True:
        s = Sample(time.monotonic() - started, rss_kib(proc.pid), open_fds(proc.pid))
        settled.append(s)
        if s.fds <= samples[0].fds or time.monotonic() >= settle_deadline:
            break
        await asyncio.sleep(0.5)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="traffic duration (default 60)")
    ap.add_argument("--minutes", type=float, help="traffic duration in minutes (overrides --seconds)")
    ap.add_argument("--conns", type=int, default=32, help="concurrent clients (default 32)")
    ap.add_argument("--warmup", type=float, help="warm-up for the RSS figure (default: a sixth of the run, ≤ 20 s)")
    ap.add_argument(
        "--settle",
        type=float,
        default=20,
        help="longest wait for the fds to return to the baseline after the run (s, default 20)",
    )
    ap.add_argument("--max-growth", type=float, default=8, help="RSS growth allowed over the second half (MiB)")
    ap.add_argument("--fd-slack", type=int, default=4, help="fds allowed above the baseline after settling")
    ap.add_argument("--max-unexpected", type=int, default=0, help="unexpected outcomes allowed")
    ap.add_argument(
        "--visitors",
        type=int,
        default=0,
        help="distinct visitors (Cookie headers) to draw from; 0 (default): a new visitor for every request",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--keep-log", metavar="FILE", help="copy tag-gate's stderr to FILE")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = ap.parse_args()
    if args.minutes is not None:
        args.seconds = args.minutes * 60
    if args.seconds <= 0 or args.conns <= 0 or args.visitors < 0:
        ap.error("--seconds/--minutes and --conns must be positive, --visitors not negative")
    warmup = args.warmup if args.warmup is not None else min(20.0, args.seconds / 6)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    if pin:
        os.sched_setaffinity(0, {0})

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    scratch = Path(tempfile.mkdtemp(prefix="tag-gate-soak-"))
    origin_port, port, admin = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    stderr_path = scratch / "tag-gate.stderr"
    try:
        origin_cmd = [sys.executable, str(REPO / "bench" / "soak_origin.py"), str(origin_port)]
        with open(scratch / "origin.stderr", "wb") as origin_err:
            procs.append(subprocess.Popen(pinned(0 if pin else None, origin_cmd), stderr=origin_err))
        serve = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}"]
        serve += ["--upstream", f"http://127.0.0.1:{origin_port}", "--admin-listen", f"127.0.0.1:{admin}"]
        with open(stderr_path, "wb") as err:
            # stdout (the access log, one line per request) is read by nobody: /dev/null never blocks.
            proc = subprocess.Popen(pinned(1 if pin else None, serve), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        procs.append(proc)
        wait_port(origin_port, procs[0])
        wait_port(port, proc)
        wait_port(admin, proc)
        time.sleep(0.5)
        print(
            f"soak: {args.seconds:.0f} s, {args.conns} clients, tag-gate at commit {commit_id()} (pid {proc.pid})"
            + (", tag-gate on CPU 1, origin and clients on CPU 0" if pin else ""),
            flush=True,
        )
        run = uvloop.run(soak(args, proc, port, admin))
        for p, name in ((procs[0], "the origin"), (proc, "tag-gate")):
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with status {p.returncode} during the soak")
        stop([proc])
        stderr_lines = stderr_path.read_text(errors="replace").splitlines()
        limits = Limits(args.max_growth, args.fd_slack, args.max_unexpected)
        failures = report(run, args.seconds, warmup, stderr_lines, limits)
        if args.keep_log:
            shutil.copyfile(stderr_path, args.keep_log)
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "seconds": args.seconds,
                        "conns": args.conns,
                        "outcomes": {f"{k[0]}/{k[1]}": v for k, v in run.tally.outcomes.items()},
                        "samples": [[s.t, s.rss_kib, s.fds] for s in run.samples + run.settled],
                        "failures": failures,
                    },
                    indent=1,
                )
            )
    except RuntimeError as exc:
        print(f"\nsoak aborted: {exc}", file=sys.stderr)
        tail = stderr_path.read_text(errors="replace").splitlines()[-20:] if stderr_path.exists() else []
        for line in tail:
            print(f"  tag-gate: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsoak interrupted", file=sys.stderr)
        return 130
    finally:
        stop(procs)
        shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        print()
        for failure in failures:
            print(f"FAIL: {failure}")
        return 1 if args.strict else 0
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
