"""WebSocket relays under faults: messages over the size limit, idle relays, a huge frame.

Upstreams are aiohttp test servers or scripted raw TCP servers; clients are aiohttp or
raw sockets writing their own frames (fragments, and a 200 MiB frame streamed from a
fixed 1 MiB buffer). Each case here failed before messages were bounded and relays had
an idle timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from tests.proxytools import ScriptedUpstream, read_request_head, running_proxy, scripted_upstream
from tests.test_cli_functional import rss_kib, serve_process

LIMIT = 64 * 1024
"""`limits.websocket_max_message` in the in-process cases: small, so the tests stay fast."""

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------- raw frames


def frame_header(opcode: int, length: int, *, fin: bool = True, masked: bool = True) -> bytes:
    """A frame header; `masked` adds an all-zero masking key (valid, and the payload goes
    on the wire as is, so a test can stream it from any buffer)."""
    first = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if length < 126:
        size = bytes([bit | length])
    elif length < 1 << 16:
        size = bytes([bit | 126]) + struct.pack("!H", length)
    else:
        size = bytes([bit | 127]) + struct.pack("!Q", length)
    return first + size + (b"\0\0\0\0" if masked else b"")


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    return frame_header(opcode, len(payload), fin=fin, masked=masked) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(opcode, fin, unmasked payload) of the next frame."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else b""
    payload = await reader.readexactly(length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, bool(b0 & 0x80), payload


async def next_data_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """The next frame that is not a ping or a pong."""
    async with asyncio.timeout(5):
        while True:
            got = await read_frame(reader)
            if got[0] not in (PING, PONG):
                return got


async def read_close_code(reader: asyncio.StreamReader, timeout: float = 5.0) -> int | None:
    """Skip frames until a close frame and return its code; None when the connection
    ended without one."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                opcode, _, payload = await read_frame(reader)
                if opcode == CLOSE:
                    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def open_raw(port: int, path: str = "/ws") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client connection through the WebSocket handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


# --------------------------------------------------------------------------- upstreams


@dataclass
class Upstream:
    """An aiohttp WebSocket upstream without a message limit of its own: it echoes what
    it gets, sends `n` bytes on "send:<n>", pings every 0.15 s on "ping-for:<seconds>",
    closes with 4001 on "close", and records the close code tag-gate sent it."""

    server: TestServer | None = None
    close_codes: list[int | None] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                elif msg.type is WSMsgType.TEXT and msg.data.startswith("send:"):
                    await ws.send_bytes(b"u" * int(msg.data[5:]))
                elif msg.type is WSMsgType.TEXT and msg.data.startswith("ping-for:"):
                    until = time.monotonic() + float(msg.data[9:])
                    while time.monotonic() < until:
                        await ws.ping()
                        await asyncio.sleep(0.15)
                    await ws.send_str("done")
                elif msg.type is WSMsgType.TEXT and msg.data == "close":
                    await ws.close(code=4001, message=b"upstream leaves")
                elif msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
        finally:
            self.close_codes.append(ws.close_code)
            self.ended.set()
        return ws

    async def close_code(self) -> int | None:
        await asyncio.wait_for(self.ended.wait(), 5)
        return self.close_codes[-1]


@contextlib.asynccontextmanager
async def ws_upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    app = web.Application()
    app.router.add_get("/ws", up.handler)
    up.server = TestServer(app, host="127.0.0.1")
    await up.server.start_server()
    try:
        yield up
    finally:
        await up.server.close()


async def closes(admin_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as client, client.get(admin_url + "/metrics") as resp:
        text = await resp.text()
    return {
        m[1]: float(m[2]) for m in re.finditer(r'^tag_gate_websocket_closes_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    }


async def wait_for_close_count(admin_url: str, reason: str, count: float = 1.0) -> dict[str, float]:
    """The close counters once `reason` reached `count` (the relay's finally may still be
    running when the client sees its close frame)."""
    deadline = time.monotonic() + 5
    while True:
        seen = await closes(admin_url)
        if seen.get(reason) == count or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- message size


async def test_too_big_message_from_the_client_gets_1009_and_the_upstream_is_closed() -> None:
    async with ws_upstream() as up, running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg:
        async with aiohttp.ClientSession() as client, client.ws_connect(tg.url + "/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "hello"
            await ws.send_bytes(b"c" * (LIMIT + 1))
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1009
        assert await up.close_code() == 1001
        seen = await wait_for_close_count(tg.admin_url, "too_big")
        assert seen["too_big"] == 1 and seen["client"] == 0 and seen["upstream"] == 0, seen


async def test_too_big_message_from_the_upstream_gets_1009_and_the_client_is_closed() -> None:
    async with ws_upstream() as up, running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg:
        async with aiohttp.ClientSession() as client, client.ws_connect(tg.url + "/ws") as ws:
            await ws.send_str(f"send:{LIMIT + 1}")
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        assert await up.close_code() == 1009
        assert (await wait_for_close_count(tg.admin_url, "too_big"))["too_big"] == 1


async def test_a_message_at_the_limit_passes_intact_and_one_byte_more_does_not() -> None:
    async with ws_upstream() as up, running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg:
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(tg.url + "/ws") as ws:
                payload = os.urandom(LIMIT)
                await ws.send_bytes(payload)
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.BINARY and msg.data == payload
                text = "é" * (LIMIT // 2)  # LIMIT bytes of UTF-8: the limit counts bytes
                await ws.send_str(text)
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.TEXT and msg.data == text
                await ws.send_str(f"send:{LIMIT}")
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.BINARY and len(msg.data) == LIMIT
            async with client.ws_connect(tg.url + "/ws") as ws:
                await ws.send_bytes(payload + b"!")
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.CLOSE and msg.data == 1009


async def test_a_compressed_message_is_limited_by_its_inflated_size() -> None:
    """permessage-deflate (browsers offer it): a message that inflates past the limit is
    refused, however small it is on the wire."""
    async with ws_upstream() as up, running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg:
        async with aiohttp.ClientSession() as client, client.ws_connect(tg.url + "/ws", compress=15) as ws:
            assert ws.compress == 15  # tag-gate accepted the extension on the client's hop
            await ws.send_bytes(b"\0" * LIMIT)
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.BINARY and msg.data == b"\0" * LIMIT
            await ws.send_bytes(b"\0" * (LIMIT * 4))  # a few hundred bytes compressed
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1009
        assert await up.close_code() == 1001


async def test_fragmented_message_from_the_client_is_limited_by_its_sum() -> None:
    half = LIMIT // 2
    async with ws_upstream() as up, running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg:
        reader, writer = await open_raw(tg.port)
        try:
            # two fragments summing to the limit, a ping between them: relayed as one message
            writer.write(frame(TEXT, b"a" * half, fin=False) + frame(PING, b"between"))
            writer.write(frame(CONTINUATION, b"b" * half))
            await writer.drain()
            assert await next_data_frame(reader) == (TEXT, True, b"a" * half + b"b" * half)
            # three fragments, each far under the limit, one byte over it together
            writer.write(frame(BINARY, b"x" * half, fin=False) + frame(CONTINUATION, b"y" * half, fin=False))
            writer.write(frame(CONTINUATION, b"z"))
            await writer.drain()
            assert await read_close_code(reader) == 1009
        finally:
            await close_writer(writer)
        assert await up.close_code() == 1001
        assert (await wait_for_close_count(tg.admin_url, "too_big"))["too_big"] == 1


async def test_fragmented_message_from_the_upstream_is_limited_by_its_sum() -> None:
    """A raw upstream that answers the handshake, then sends fragments one byte over the
    limit together; tag-gate tells it 1009 and the client 1001."""
    got_close: list[int | None] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        head = await read_request_head(reader)
        m = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head)
        assert m
        accept = base64.b64encode(hashlib.sha1(m[1] + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        half = LIMIT // 2
        writer.write(frame(TEXT, b"ok", masked=False))
        writer.write(frame(BINARY, b"x" * half, fin=False, masked=False))
        writer.write(frame(CONTINUATION, b"y" * half, fin=False, masked=False))
        writer.write(frame(CONTINUATION, b"z", masked=False))
        await writer.drain()
        got_close.append(await read_close_code(reader))

    async with (
        scripted_upstream(script) as up,
        running_proxy(up.url, limits={"websocket_max_message": LIMIT}) as tg,
        aiohttp.ClientSession() as client,
        client.ws_connect(tg.url + "/ws") as ws,
    ):
        assert (await ws.receive(timeout=5)).data == "ok"
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        for _ in range(250):
            if got_close:
                break
            await asyncio.sleep(0.02)
        assert got_close == [1009]


# --------------------------------------------------------------------------- idle timeout


async def test_an_idle_relay_is_closed_on_both_sides() -> None:
    async with ws_upstream() as up, running_proxy(up.url, timeouts={"websocket_idle": 0.5}) as tg:
        async with aiohttp.ClientSession() as client, client.ws_connect(tg.url + "/ws") as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "hello"
            started = time.monotonic()
            msg = await ws.receive(timeout=5)
            waited = time.monotonic() - started
            assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        assert 0.3 < waited < 3
        assert await up.close_code() == 1001
        seen = await wait_for_close_count(tg.admin_url, "idle")
        assert seen["idle"] == 1 and seen["client"] == 0


@pytest.mark.parametrize("pinger", ["client", "upstream"])
async def test_pings_keep_a_relay_alive(pinger: str) -> None:
    idle = 0.6
    async with ws_upstream() as up, running_proxy(up.url, timeouts={"websocket_idle": idle}) as tg:
        async with aiohttp.ClientSession() as client, client.ws_connect(tg.url + "/ws") as ws:
            if pinger == "client":
                for _ in range(12):  # 1.8 s, three idle periods, no data message
                    await ws.ping()
                    await asyncio.sleep(0.15)
                await ws.send_str("still there?")
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.TEXT and msg.data == "still there?"
            else:
                # the upstream pings for 1.8 s; the client's pongs (automatic) go back
                await ws.send_str("ping-for:1.8")
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.TEXT and msg.data == "done"
            # then silence: the idle timeout still applies
            started = time.monotonic()
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1001
            assert time.monotonic() - started < idle + 1.5
        assert await up.close_code() == 1001


# --------------------------------------------------------------------------- metrics


async def test_closes_are_counted_by_the_side_that_closed() -> None:
    async with ws_upstream() as up, running_proxy(up.url) as tg:
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(tg.url + "/ws") as ws:
                await ws.send_str("hello")
                assert (await ws.receive(timeout=5)).data == "hello"
                await ws.close(code=4000, message=b"bye")
            assert await up.close_code() == 4000
            assert (await wait_for_close_count(tg.admin_url, "client"))["client"] == 1
            up.ended.clear()
            async with client.ws_connect(tg.url + "/ws") as ws:
                await ws.send_str("close")
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.CLOSE and msg.data == 4001 and msg.extra == "upstream leaves"
            seen = await wait_for_close_count(tg.admin_url, "upstream")
            assert seen["upstream"] == 1 and seen["client"] == 1
            assert set(seen) == {"too_big", "idle", "client", "upstream", "error", "shutdown"}


async def test_a_protocol_error_closes_both_sides_and_counts_as_error() -> None:
    async with ws_upstream() as up, running_proxy(up.url) as tg:
        reader, writer = await open_raw(tg.port)
        try:
            writer.write(frame(TEXT, b"not utf-8: \xff"))
            assert await read_close_code(reader) == 1007
        finally:
            await close_writer(writer)
        assert await up.close_code() == 1001
        assert (await wait_for_close_count(tg.admin_url, "error"))["error"] == 1


async def test_a_relay_cut_at_shutdown_is_counted_and_both_sides_are_let_go() -> None:
    async with ws_upstream() as up, running_proxy(up.url) as tg:
        reader, writer = await open_raw(tg.port)
        try:
            writer.write(frame(TEXT, b"hello"))
            assert await next_data_frame(reader) == (TEXT, True, b"hello")
            started = time.monotonic()
            await tg.service.stop(grace=0.2)
            assert time.monotonic() - started < 3
            assert await read_close_code(reader, timeout=3) in (1001, None)
        finally:
            await close_writer(writer)
        await asyncio.wait_for(up.ended.wait(), 5)
        text = tg.service.state.metrics.render().decode()
        assert 'tag_gate_websocket_closes_total{reason="shutdown"} 1.0' in text
        assert "tag_gate_websockets_open 0.0" in text


# --------------------------------------------------------------------------- memory


async def test_a_200_mib_frame_keeps_memory_flat() -> None:
    """tag-gate as its own process: a client announces one 200 MiB frame and streams its
    payload; tag-gate refuses it from the header and its RSS stays flat."""
    total = 200 * 1024 * 1024
    block = bytes(1 << 20)
    async with ws_upstream() as up:
        with serve_process("--upstream", up.url) as (proc, port, admin):
            reader, writer = await open_raw(port)
            baseline = rss_kib(proc.pid)
            peak = baseline
            replies = asyncio.ensure_future(read_close_code(reader, timeout=10))
            sent = 0
            try:
                writer.write(frame_header(BINARY, total))
                while sent < total and not writer.is_closing():
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
                    peak = max(peak, rss_kib(proc.pid))
                    if peak - baseline > 64 * 1024:
                        break  # the bug: it buffers the whole frame (600 MiB before the fix); stop early
            except ConnectionError:
                pass
            try:
                await asyncio.sleep(0.2)
                peak = max(peak, rss_kib(proc.pid))
                growth_mib = (peak - baseline) / 1024
                assert growth_mib < 48, f"RSS grew by {growth_mib:.1f} MiB for one 200 MiB frame ({sent} bytes sent)"
                assert sent < total, "tag-gate read the whole 200 MiB frame"
                assert await replies in (1009, None)  # told 1009, or cut off (never left hanging)
            finally:
                replies.cancel()
                await close_writer(writer)
            # still serving, and the refusal was counted
            assert (await wait_for_close_count(f"http://127.0.0.1:{admin}", "too_big"))["too_big"] == 1
            async with aiohttp.ClientSession() as client, client.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                await ws.send_str("after")
                assert (await ws.receive(timeout=5)).data == "after"
