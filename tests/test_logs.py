"""The logs: one line per event whatever the input, and never a stalled event loop.

The subprocess tests run `tag-gate serve` as operators do and read its real stderr;
the unit tests hold the formatter and the access log's writer to their contracts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.logs import AccessLog, LineWriter, OneLineFormatter, OneLineLogger, one_line
from tests.proxytools import ScriptedUpstream, free_port, read_request_head, scripted_upstream

CLI = [sys.executable, "-m", "proxy"]

EVENT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S[^\n]*\Z")
"""What every line tag-gate writes to stderr looks like: one event, printable text."""


@contextlib.contextmanager
def tag_gate(
    upstream: str, *, stdout: IO[Any] | int, stderr: IO[Any] | int, args: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """`tag-gate serve` in a subprocess on free ports, its output where the test says;
    yields (process, public port, admin port)."""
    port, admin = free_port(), free_port()
    command = [*CLI, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
    proc = subprocess.Popen([*command, "--upstream", upstream, *args], stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert proc.poll() is None, "tag-gate exited early"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", admin), timeout=0.2):
                break
            time.sleep(0.05)
        yield proc, port, admin
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def stop(proc: subprocess.Popen[bytes], within: float = 10.0) -> None:
    """SIGTERM, and the process must exit 0 within `within` seconds."""
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, within) == 0


def event_lines(path: Path) -> list[str]:
    """stderr's lines, split the way any reader might split them (`splitlines` also breaks
    at VT, FF, FS/GS/RS, NEL and the Unicode line and paragraph separators)."""
    return path.read_bytes().decode("utf-8").splitlines()


def assert_one_line_events(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert "Logging error" not in text
    assert "Traceback" not in text
    bad = [line for line in lines if not EVENT_LINE.match(line) or not line.isprintable()]
    assert not bad, f"{len(bad)} lines are not one event each, e.g. {bad[:5]!r}"


@contextlib.asynccontextmanager
async def upstream(app: web.Application) -> AsyncIterator[TestServer]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def raw_send(port: int, data: bytes, *, reset: bool = False, read: bool = True) -> bytes:
    """Send raw bytes; read the answer (bounded) unless told not to; close, or reset
    (RST, SO_LINGER 0) with `reset`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if read:
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(2):
                    answer = await reader.read(65536)
    finally:
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return answer


def garbled_upstream() -> Any:
    """A `scripted_upstream` script answering with a response head aiohttp refuses, its
    bytes holding `%` directives, CR, LF and non-UTF-8."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 %s%d\r\nX-%(name)s\xff\x00: a\rb\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    return script


# --- the event log, one line whatever the input -------------------------------------------------

CLIENT_REQUESTS = [
    b"GET /a%s%d HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a%s%d\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%(name)s%n%%\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%s HTTP/1.1\r\nHost: x\r\nX-A: a\rb%s\r\n\r\n",
    b"GET /%s HTTP/1.1\r\nHost: x\r\nX-B%s\nY: 1\r\n\r\n",
    b"GET /\xff\xfe%s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xe2\x80\xa8\xc2\x85%s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \xff%s\x00\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-C: \xe2\x80\xa9%d\xc0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
]


async def test_client_and_upstream_bytes_give_one_line_per_event(tmp_path: Path) -> None:
    """Every request here logs exactly one warning (the client's request refused by the
    parser, or the upstream's garbled answer), and each is one printable line: `%`
    directives are never formatted, CR/LF/NEL/U+2028/NUL/undecodable bytes are escaped."""
    err = tmp_path / "stderr"
    async with scripted_upstream(garbled_upstream()) as up:
        with (
            err.open("wb") as err_file,
            tag_gate(up.url, stdout=subprocess.DEVNULL, stderr=err_file) as (proc, port, _),
        ):
            for raw in CLIENT_REQUESTS:
                answer = await raw_send(port, raw)
                assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400", b"HTTP/1.1 502")), (raw, answer[:80])
            await stop(proc)
    lines = event_lines(err)
    assert_one_line_events(lines)
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == len(CLIENT_REQUESTS), warnings
    assert any("/a%s%d" in line for line in warnings)
    assert any("\\r" in line for line in warnings)


def test_formatter_makes_any_record_one_line() -> None:
    formatter = OneLineFormatter()
    try:
        raise ValueError("first line\r\nsecond %s line\x00\u2028third\udcff")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "bad %s%d request\nfrom %s", ("x",), sys.exc_info()
        )
    line = formatter.format(record)
    assert EVENT_LINE.match(line) and line.isprintable(), line
    # the arguments did not fit: printed as they are, not formatted
    assert "'bad %s%d request\\nfrom %s' (arguments that do not fit it: ('x',))" in line
    assert "ValueError: first line\\r second %s line\\x00\\u2028third\\udcff" in line
    assert "[at tests/test_logs.py:" in line


def test_formatter_renders_never_retrieved_messages_as_one_line() -> None:
    """asyncio's "Task exception was never retrieved": a message of several lines plus
    a traceback, logged on the `asyncio` logger."""
    exc = ConnectionResetError("Connection lost")
    record = logging.LogRecord(
        "asyncio",
        logging.ERROR,
        __file__,
        1,
        "Task exception was never retrieved\nfuture: <Task finished coro=<send()> exception=%s>",
        None,
        (type(exc), exc, None),
    )
    line = OneLineFormatter().format(record)
    assert EVENT_LINE.match(line) and line.isprintable(), line
    assert line.endswith(
        "Task exception was never retrieved\\nfuture: <Task finished coro=<send()> exception=%s>"
        ": ConnectionResetError: Connection lost"
    )


def test_aiohttp_handler_logger_never_formats_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    logger = OneLineLogger(logging.getLogger("tag_gate.http"), {})
    with caplog.at_level(logging.WARNING, "tag_gate.http"):
        try:
            raise ValueError("b'GET /a%s%d HTTP/1.1'\n   ^")
        except ValueError:
            logger.exception("Error handling request from %s", "127.0.0.1")
        logger.exception("handler returned %s%d", exc_info=None)
    assert [r.getMessage() for r in caplog.records] == [
        "Error handling request from 127.0.0.1: ValueError: b'GET /a%s%d HTTP/1.1'",
        "handler returned %s%d",
    ]


def test_one_line_escapes_every_line_break() -> None:
    breaks = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    text = one_line(f"a{breaks}b\udcffc")
    assert text.splitlines() == [text]
    assert text == "a\\r\\n\\x0b\\x0c\\x1c\\x1d\\x1e\\x85\\u2028\\u2029b\\udcffc"
    assert one_line("plain é %s") == "plain é %s"


ROUTING_PROBE = """
import gc, logging, sys, threading, warnings
from proxy.logs import ROUTED_LOGGERS, install_event_log

logging.getLogger("aiohttp.server").addHandler(logging.StreamHandler(sys.stderr))  # a stray handler
events = install_event_log(logging.INFO)
for name in ROUTED_LOGGERS:
    try:
        raise ConnectionResetError("peer\\r\\nreset %s")
    except ConnectionResetError:
        logging.getLogger(name).error("from %s:\\nline two", name, exc_info=True)

class Broken:
    def __del__(self):
        raise RuntimeError("in __del__\\nsecond line")

Broken()
gc.collect()
worker = threading.Thread(target=lambda: 1 / 0, name="probe")
worker.start()
worker.join()
warnings.warn("a warning\\nwith two lines")
events.close()
"""


def test_serve_logging_routes_aiohttp_and_asyncio_loggers_through_one_line_handler() -> None:
    """What `tag-gate serve` installs: tag-gate's, aiohttp's and asyncio's loggers, plus
    exceptions raised in `__del__`, in threads, and warnings, each become one line."""
    result = subprocess.run([sys.executable, "-c", ROUTING_PROBE], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert_one_line_events(lines)
    from proxy.logs import ROUTED_LOGGERS

    for name in ROUTED_LOGGERS:
        assert sum(f" ERROR {name}: from {name}:\\nline two" in line for line in lines) == 1, (name, lines)
    assert sum("ConnectionResetError: peer\\r reset %s [at " in line for line in lines) == len(ROUTED_LOGGERS)
    assert any("RuntimeError: in __del__ second line" in line for line in lines)
    assert any("exception in thread probe: ZeroDivisionError" in line for line in lines)
    assert any(" WARNING py.warnings: " in line and "a warning\\nwith two lines" in line for line in lines)
    assert len(lines) == len(ROUTED_LOGGERS) + 3


# --- never block the event loop on a stream nobody reads -----------------------------------------

LONG = "x" * 1900
"""A path long enough that 2,000 access-log lines (4 MB) overflow the access log's buffer
and a pipe's 64 KiB many times over."""


async def metric(client: aiohttp.ClientSession, admin: int, name: str) -> float:
    async with client.get(f"http://127.0.0.1:{admin}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        text = await resp.text()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def healthz(client: aiohttp.ClientSession, admin: int) -> int:
    async with client.get(f"http://127.0.0.1:{admin}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status


async def hammer(port: int, count: int, expect: int, *, concurrency: int = 20) -> None:
    """`count` GETs of a long path over kept-alive connections, each answered with `expect`
    within 10 s."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:

        async def one(i: int) -> None:
            async with client.get(f"http://127.0.0.1:{port}/{LONG}?n={i}", timeout=timeout) as resp:
                assert resp.status == expect
                await resp.read()

        await asyncio.gather(*(one(i) for i in range(count)))


@pytest.mark.slow
async def test_stdout_nobody_reads_does_not_stop_the_proxy(tmp_path: Path) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    err = tmp_path / "stderr"
    async with upstream(app) as site:
        url = f"http://127.0.0.1:{site.port}"
        with err.open("wb") as err_file, tag_gate(url, stdout=subprocess.PIPE, stderr=err_file) as (proc, port, admin):
            await hammer(port, 2000, 200)
            async with aiohttp.ClientSession() as client:
                assert await healthz(client, admin) == 200
                # the last lines reach the writer within a hand-off interval
                await asyncio.sleep(0.5)
                dropped = await metric(client, admin, 'tag_gate_log_dropped_total{stream="access"}')
                assert 0 < dropped < 2000
                assert await metric(client, admin, 'tag_gate_log_dropped_total{stream="error"}') == 0
            started = time.monotonic()
            await stop(proc)
            assert time.monotonic() - started < 5  # the drain's wait is bounded
    assert_one_line_events(event_lines(err))


@pytest.mark.slow
async def test_stderr_nobody_reads_does_not_stop_the_proxy() -> None:
    """Every request to a dead upstream logs a warning; stderr is a pipe nobody reads."""
    dead = f"http://127.0.0.1:{free_port()}"
    with tag_gate(dead, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as (proc, port, admin):
        await hammer(port, 2000, 502)
        async with aiohttp.ClientSession() as client:
            assert await healthz(client, admin) == 200
            assert await metric(client, admin, 'tag_gate_log_dropped_total{stream="error"}') > 0
        started = time.monotonic()
        await stop(proc)
        assert time.monotonic() - started < 5


async def test_access_log_writes_every_line_and_counts_what_it_drops() -> None:
    out = io.StringIO()
    log = AccessLog(out)
    for i in range(3):
        log.request(1.5, "127.0.0.1", "GET", f"/p{i}", 200, 1.0, None)
    log.write({"odd": "a\nb"})
    assert log.flush()
    lines = out.getvalue().splitlines()
    assert lines[0] == '{"ts":1.500,"remote":"127.0.0.1","method":"GET","path":"/p0","status":200,"ms":1.00}'
    assert json.loads(lines[3]) == {"odd": "a\nb"} and len(lines) == 4
    assert log.dropped == 0
    assert await log.close()
    log.request(1.5, None, "GET", "/late", 200, 1.0, None)
    assert not log.flush() or log.dropped == 1


def test_line_writer_drops_what_does_not_fit_and_never_waits() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:  # a pipe nobody reads, already full
            os.write(write_fd, b"-" * 4096)
    os.set_blocking(write_fd, True)
    line = "y" * 99 + "\n"
    with os.fdopen(write_fd, "w") as stream:
        writer = LineWriter(stream, capacity=1000, name="test writer")
        started = time.monotonic()
        taken = sum(writer.offer([line]) for _ in range(2000))
        assert time.monotonic() - started < 1.0
        assert taken <= 21 and writer.dropped == 2000 - taken  # one batch being written, one waiting
        assert not writer.drain(0.2)  # bounded: the pipe stays full
        received = b""
        while not writer.drain(0.01):  # the reader wakes up
            received += os.read(read_fd, 1 << 20)
        assert writer.close(1.0)
    while chunk := os.read(read_fd, 1 << 20):
        received += chunk
    os.close(read_fd)
    assert received.lstrip(b"-") == line.encode() * taken  # what was taken arrives whole


# --- fuzz: odd and malformed requests -----------------------------------------------------------


def fuzz_requests(seed: int, count: int) -> list[tuple[bytes, bool]]:
    """(raw bytes, reset instead of close) for `count` odd requests."""
    rng = random.Random(seed)
    odd = [b"%s", b"%d", b"%(x)s", b"\r", b"\n", b"\x00", b"\x7f", b"\xff", b"\xe2\x80\xa8", b"\xc2\x85", b" ", b"\t"]

    def junk(n: int) -> bytes:
        return b"".join(rng.choice(odd) if rng.random() < 0.3 else bytes([rng.randrange(33, 127)]) for _ in range(n))

    def head(line: bytes, *headers: bytes) -> bytes:
        return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"

    makers = [
        lambda: head(junk(rng.randrange(1, 60))),
        lambda: head(b"GET /" + junk(rng.randrange(1, 40)) + b" HTTP/1.1", b"Host: x"),
        lambda: head(junk(5) + b" / HTTP/1.1", b"Host: x"),
        lambda: head(b"GET / HTTP/" + junk(3), b"Host: x"),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", junk(rng.randrange(1, 40))),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", b"X-" + junk(8) + b": " + junk(20)),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", b" folded: " + junk(5)),
        lambda: head(b"GET /" + b"a" * rng.choice((9000, 70000)) + b" HTTP/1.1", b"Host: x"),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", b"X-Big: " + b"b" * rng.choice((9000, 70000))),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", *(b"X-%d: 1" % i for i in range(200))),
        lambda: head(b"POST /echo HTTP/1.1", b"Host: x", b"Content-Length: 1000") + junk(10),
        lambda: head(b"POST /echo HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked") + b"ff\r\n" + junk(10),
        lambda: head(b"POST /echo HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked") + junk(6) + b"\r\n",
        lambda: head(b"POST /echo HTTP/1.1", b"Host: x", b"Content-Length: 5", b"Content-Length: 6") + b"hello",
        lambda: head(b"POST /echo HTTP/1.1", b"Host: x", b"Transfer-Encoding: " + junk(8)) + b"0\r\n\r\n",
        lambda: head(b"GET /big HTTP/1.1", b"Host: x"),
        lambda: head(b"GET /slow HTTP/1.1", b"Host: x"),
        lambda: head(b"GET / HTTP/1.1", b"Host: x") + junk(rng.randrange(1, 80)),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", b"Upgrade: websocket", b"Connection: upgrade"),
        lambda: head(b"GET / HTTP/1.1", b"Host: x", b"Expect: " + junk(6), b"Content-Length: 3") + b"abc",
        lambda: head(b"GET / HTTP/1.1", b"Host: x")[: rng.randrange(1, 20)],
    ]
    return [(rng.choice(makers)(), rng.random() < 0.3) for _ in range(count)]


@pytest.mark.slow
async def test_fuzzed_requests_leave_one_line_events_and_no_tracebacks(tmp_path: Path) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>" + b"x" * (2 << 20), content_type="text/html")

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"tick\n")
            await asyncio.sleep(0.05)
        return resp

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/{tail:.*}", echo)
    err = tmp_path / "stderr"
    cases = fuzz_requests(seed=12, count=400)
    async with upstream(app) as site:
        url = f"http://127.0.0.1:{site.port}"
        with (
            err.open("wb") as err_file,
            tag_gate(url, stdout=subprocess.DEVNULL, stderr=err_file) as (proc, port, admin),
        ):
            gate = asyncio.Semaphore(16)

            async def one(raw: bytes, reset: bool) -> None:
                async with gate:
                    with contextlib.suppress(ConnectionError):
                        await raw_send(port, raw, reset=reset, read=not reset or len(raw) % 2 == 0)

            await asyncio.gather(*(one(raw, reset) for raw, reset in cases))
            async with aiohttp.ClientSession() as client:
                assert await healthz(client, admin) == 200
            await asyncio.sleep(0.5)  # let late finalisers (never-retrieved tasks) log
            await stop(proc)
    lines = event_lines(err)
    assert_one_line_events(lines)
    assert sum(" WARNING " in line for line in lines) > 100
    # TODO(pool.py): the body sender (UpstreamPool._send_body) and the response waiter in
    # proxy/pool.py still leave exceptions nobody retrieves; asyncio logs them (one line
    # each, checked above). Once pool.py retrieves them, also assert:
    #     assert not any("exception was never retrieved" in line for line in lines)
