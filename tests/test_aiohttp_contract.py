"""The contract tag-gate relies on from aiohttp's private surface (proxy/http/_aiohttp.py).

pyproject pins aiohttp to the minor line these tests were run against. A new aiohttp
that renames or reshapes one of these fails here, by name, instead of silently undoing
obs-text pass-through, framing, the pool's flow control or the pipelining workaround.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import tomllib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import http_parser, http_writer, web, web_protocol
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser
from aiohttp.streams import StreamReader
from multidict import CIMultiDict

from proxy.http import _aiohttp

ROOT = Path(__file__).resolve().parent.parent


def test_aiohttp_is_pinned_to_the_tested_minor_line() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("aiohttp"))
    assert spec == "aiohttp>=3.14.3,<3.15"
    major, minor, *_ = aiohttp.__version__.split(".")
    assert (major, minor) == ("3", "14"), f"aiohttp {aiohttp.__version__} is outside the line this test ran on"


def test_head_serializer_is_a_module_function_with_two_positional_parameters() -> None:
    current = http_writer._serialize_headers
    assert callable(current)
    if not getattr(current, "_tag_gate", False):
        assert list(inspect.signature(current).parameters) == ["status_line", "headers"]
    out = current("HTTP/1.1 200 OK", CIMultiDict({"X-A": "1"}))
    assert out == b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n"


def test_installing_the_head_serializer_is_idempotent_and_used_by_the_writer() -> None:
    from proxy.http.forwarding import raw_head_serializer

    _aiohttp.install_head_serializer(raw_head_serializer)
    first = _aiohttp.current_head_serializer()
    _aiohttp.install_head_serializer(raw_head_serializer)
    assert _aiohttp.current_head_serializer() is first and _aiohttp.head_serializer_installed()
    # The writer looks the function up in its module at call time (a patched name is seen).
    source = inspect.getsource(http_writer.StreamWriter.write_headers)
    assert "_serialize_headers(" in source


def test_stream_response_holds_its_head_for_the_first_body_write() -> None:
    resp = web.StreamResponse()
    assert hasattr(resp, "_send_headers_immediately") and resp._send_headers_immediately is True
    _aiohttp.send_head_with_body(resp)
    assert resp._send_headers_immediately is False


def test_under_uvloop_response_pieces_go_to_writelines_unjoined() -> None:
    """aiohttp reads SKIP_WRITELINES at every write and then calls the transport's
    writelines; cleared under uvloop (never under asyncio's loop), and a 3 MB chunked
    response written in pieces, read slowly through a small receive buffer, arrives
    whole and in order (uvloop's writelines keeps flow control: the writer waits)."""
    import uvloop

    code = http_writer.StreamWriter._writelines
    assert "SKIP_WRITELINES" in code.__code__.co_names and "transport.writelines(" in inspect.getsource(code)
    saved = http_writer.SKIP_WRITELINES
    piece = 64 * 1024
    body = b"".join(b"%08d" % i for i in range(3 * 1024 * 1024 // 8))

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for at in range(0, len(body) - piece, piece):
            await resp.write(body[at : at + piece])
        await resp.write_eof(body[-piece:])  # the last piece and the chunked end in one write
        return resp

    async def check() -> bytes:
        loop = asyncio.get_running_loop()
        server = web.Server(handler)
        assert _aiohttp.write_pieces_unjoined(loop) is True and http_writer.SKIP_WRITELINES is False
        srv = await loop.create_server(server, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = bytearray()
            for _ in range(100_000):  # bounded: about 3 MB in reads of up to 4 KB, a pause now and then
                got = await asyncio.wait_for(reader.read(4096), 10)
                if not got:
                    break
                data += got
                if len(data) % 64 == 0:
                    await asyncio.sleep(0.001)
            writer.close()
            return bytes(data)
        finally:
            srv.close()
            await server.shutdown()

    plain = asyncio.new_event_loop()
    try:
        assert _aiohttp.write_pieces_unjoined(plain) is (not saved)  # asyncio's loop: aiohttp's choice
        raw = uvloop.run(check())
    finally:
        plain.close()
        http_writer.SKIP_WRITELINES = saved
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    out, pos = bytearray(), 0
    while True:
        end = chunked.index(b"\r\n", pos)
        size = int(chunked[pos:end], 16)
        if not size:
            break
        out += chunked[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    assert bytes(out) == body


def test_server_and_runner_private_attributes() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    async def check() -> None:
        server = web.Server(handler)
        connections: object = server._connections
        assert isinstance(connections, dict) and _aiohttp.connection_count(server) == 0
        assert _aiohttp.server_loop(server) is asyncio.get_running_loop()
        runner = web.ServerRunner(server, shutdown_timeout=3.0)
        assert runner._shutdown_timeout == 3.0
        _aiohttp.set_cleanup_timeout(runner, 0.5)
        assert runner._shutdown_timeout == 0.5

    asyncio.run(check())


def test_request_handler_slots_and_hooks() -> None:
    handler = web_protocol.RequestHandler
    slots = {s for cls in handler.__mro__ for s in getattr(cls, "__slots__", ())}
    assert "_max_msg_queue_size" in slots
    for hook in ("handle_error", "finish_response", "shutdown", "close", "force_close", "data_received"):
        assert callable(getattr(handler, hook)), hook
    assert list(inspect.signature(handler.handle_error).parameters)[:5] == [
        "self",
        "request",
        "status",
        "exc",
        "message",
    ]
    assert list(inspect.signature(handler.finish_response).parameters) == ["self", "request", "resp", "start_time"]
    assert isinstance(web_protocol.ERROR, _aiohttp.RawRequestMessage)
    assert _aiohttp.is_unparseable_head(web_protocol.ERROR)
    assert _aiohttp.with_http11(web_protocol.ERROR).version == aiohttp.HttpVersion11


def test_the_pipeline_cap_is_lowered_by_one() -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    async def check() -> None:
        server = web.Server(handler)
        proto = server()
        before = proto._max_msg_queue_size
        assert before > 1
        _aiohttp.lower_pipeline_cap(proto)
        assert proto._max_msg_queue_size == before - 1

    asyncio.run(check())


def test_base_protocol_flow_control_slots() -> None:
    slots = set(BaseProtocol.__slots__)
    assert {"_paused", "_reading_paused", "_parser", "transport"} <= slots


def test_the_c_request_parser_is_what_runs() -> None:
    assert _aiohttp.c_parser_in_use()
    assert http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"


def test_response_parser_and_stream_reader_call_only_the_flow_control_we_own() -> None:
    """A body past the StreamReader's high-water mark pauses the protocol through
    `pause_reading()`; draining resumes it with `resume_reading(...)`; the parser is
    built with the keyword arguments `make_response_parser` passes."""
    assert HttpResponseParser.__module__ == "aiohttp._http_parser"  # the C parser
    assert inspect.signature(StreamReader.__init__).parameters.keys() >= {"protocol", "limit"}
    calls: list[str] = []

    class Recorder(_aiohttp.UpstreamProtocol):
        def pause_reading(self) -> None:
            calls.append("pause")
            super().pause_reading()

        def resume_reading(self, resume_parser: bool = True) -> None:
            calls.append("resume")
            super().resume_reading(resume_parser)

    async def check() -> None:
        loop = asyncio.get_running_loop()
        proto = Recorder(loop)
        parser = _aiohttp.make_response_parser(
            proto,
            loop,
            buffer=2**16,
            max_field_size=8190,
            max_headers=64,
            with_body=True,
            payload_exception=aiohttp.ClientPayloadError,
        )
        half = b"x" * (1 << 20)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * len(half))
        messages, upgraded, tail = parser.feed_data(head + half)
        assert not upgraded and tail == b""
        (message, payload), *_ = messages
        assert message.code == 200 and isinstance(payload, StreamReader)

        def paused() -> bool:
            return proto.reading_paused

        assert calls == ["pause"] and paused(), "past the high-water mark: paused"
        got = await payload.read(len(half))
        assert got == half and calls == ["pause", "resume"] and not paused()
        parser.feed_data(half)
        while not payload.at_eof():
            got += await payload.readany()
        assert got == half + half

    asyncio.run(check())


@pytest.mark.parametrize("module", ["http_writer", "http_parser", "base_protocol", "web_protocol", "streams"])
def test_no_other_module_imports_aiohttp_internals(module: str) -> None:
    """ruff's banned-API rule enforces this for proxy/; the test says it without ruff."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "proxy").rglob("*.py")
        if p.name != "_aiohttp.py"
        and (f"aiohttp.{module}" in p.read_text() or f"from aiohttp import {module}" in p.read_text())
    ]
    assert offenders == []


async def test_async_tests_run_on_uvloop() -> None:
    """The suite's async tests run on the loop tag-gate serves on (tests/conftest.py's
    `pytest_asyncio_loop_factories`, pytest-asyncio 1.4 and later)."""
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.partition(".")[0] == "uvloop", type(loop)
