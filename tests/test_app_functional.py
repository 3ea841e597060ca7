"""The proxy core through real loopback servers: framing, headers, bodies, faults.

Upstreams are aiohttp test servers or scripted raw TCP servers; clients are aiohttp or
raw sockets. Numbers in test names refer to the catalogue in docs/reliability.md §8.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxytools import (
    ScriptedUpstream,
    raw_exchange,
    read_request_head,
    replies,
    running_proxy,
    scripted_upstream,
    split_response,
)


def upstream_app() -> web.Application:
    """An upstream application that accepts larger headers and bodies than tag-gate, so the
    limits under test are tag-gate's own."""
    return web.Application(client_max_size=1024**3, handler_args={"max_field_size": 65536, "max_line_size": 65536})


def echo_app(log: list[dict[str, Any]] | None = None) -> web.Application:
    """An upstream that answers with what it received, as JSON."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
        }
        if log is not None:
            log.append(record)
        return web.json_response(record)

    app = upstream_app()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def start(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def header_values(headers: list[list[str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


# --------------------------------------------------------------------------- forwarding


async def test_path_and_query_forwarded_byte_identical() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        targets = [
            "/a%2Fb?x=%252F&y=1",
            "//double//slash",
            "/x/../y",
            "/p;jsessionid=ABC?q",
            "/%00zero",
            "/q?" + "k=v&" * 1700,
        ]
        for target in targets:
            raw = await raw_exchange(
                tg.port,
                f"GET {target} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n".encode("latin-1"),
            )
            status, _, _ = split_response(raw)
            assert status == 200, target
        assert [r["path"] for r in seen] == targets
        # raw non-ASCII in the target is refused by the parser rather than re-encoded
        raw = await raw_exchange(tg.port, "GET /ümlaut HTTP/1.1\r\nHost: s\r\n\r\n".encode())
        assert split_response(raw)[0] == 400
        assert len(seen) == len(targets)
    await server.close()


async def test_hop_by_hop_and_nominated_headers_removed_from_request() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(
            tg.port,
            b"GET /h HTTP/1.1\r\nHost: site.example\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
            b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
            b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\nX-Kept: yes\r\n\r\n",
        )
        assert split_response(raw)[0] == 200
        names = {k.lower() for k, _ in seen[0]["headers"]}
        for gone in (
            "x-secret",
            "keep-alive",
            "te",
            "proxy-authorization",
            "proxy-connection",
            "upgrade",
            "http2-settings",
        ):
            assert gone not in names
        assert header_values(seen[0]["headers"], "X-Kept") == ["yes"]
        assert header_values(seen[0]["headers"], "Host") == ["site.example"]
    await server.close()


@pytest.mark.parametrize("nominated", ["Cookie", "X-Forwarded-For", "Host", "Sec-GPC", "Content-Length"])
async def test_connection_nominating_protected_header_is_refused(nominated: str) -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(
            tg.port,
            f"GET / HTTP/1.1\r\nHost: s\r\nConnection: keep-alive, {nominated}\r\nCookie: tg_consent=\r\n\r\n".encode(),
        )
        assert split_response(raw)[0] == 400
        assert seen == []
    await server.close()


async def test_hop_by_hop_headers_removed_from_response() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Trace\r\nX-Trace: secret\r\n"
            b"Keep-Alive: timeout=3\r\nProxy-Authenticate: Basic\r\nUpgrade: foo\r\nX-Kept: 1\r\n\r\nok"
        )
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        async with aiohttp.ClientSession() as client, client.get(tg.url + "/") as resp:
            assert resp.status == 200
            assert await resp.read() == b"ok"
            for gone in ("X-Trace", "Keep-Alive", "Proxy-Authenticate", "Upgrade"):
                assert gone not in resp.headers
            assert resp.headers["X-Kept"] == "1"


async def test_header_bytes_outside_utf8_reach_the_client_unchanged() -> None:
    """obs-text (RFC 9110 §5.5) in upstream header values, e.g. a Latin-1 filename or
    cookie, passes byte for byte; aiohttp alone would drop those bytes."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="caf\xe9 \xfc.txt"\r\n'
        b"Set-Cookie: pref=gr\xfcn; Path=/\r\nSet-Cookie: _ga=GA1.1.1; Path=/\r\n"
        b"X-Utf8: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok"
    )

    async with scripted_upstream(replies(head)) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
    assert b'Content-Disposition: attachment; filename="caf\xe9 \xfc.txt"\r\n' in raw
    assert b"Set-Cookie: pref=gr\xfcn; Path=/\r\n" in raw  # unclassified, kept as sent
    assert b"_ga=" not in raw  # the cookie firewall still works on such a head
    assert b"X-Utf8: caf\xc3\xa9\r\n" in raw
    assert raw.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize(
    "server",
    [None, b"Server: origin/1.2\r\n", b"Server: Python/3.11 aiohttp/3.14.5\r\n"],
    ids=["none", "own", "aiohttp"],
)
async def test_no_server_header_is_invented(server: bytes | None) -> None:
    """What the site says about its server passes as sent; when it says nothing, neither
    does tag-gate (aiohttp would announce its own Python and aiohttp versions)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + (server or b"") + b"Content-Length: 2\r\n\r\nok"

    async with scripted_upstream(replies(head)) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        own = await raw_exchange(
            tg.port, b"GET /__tag-gate/activate.js HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
        )
    response_head = raw.partition(b"\r\n\r\n")[0] + b"\r\n"
    if server is None:
        assert b"\r\nserver:" not in response_head.lower()
    else:
        assert server in response_head
    assert raw.endswith(b"\r\n\r\nok")
    assert own.startswith(b"HTTP/1.1 200") and b"\r\nserver:" not in own.partition(b"\r\n\r\n")[0].lower()


def test_raw_header_serializer_still_refuses_response_splitting() -> None:
    from multidict import CIMultiDict

    from proxy.http import _aiohttp
    from proxy.http.forwarding import raw_head_serializer

    _aiohttp.install_head_serializer(raw_head_serializer)
    serialize = _aiohttp.current_head_serializer()
    assert serialize("HTTP/1.1 200 OK", CIMultiDict({"X-A": "caf\udce9"})).endswith(b"X-A: caf\xe9\r\n\r\n")
    for bad in ("caf\udce9\r\nX-Evil: 1", "caf\udce9\nX", "\udce9\x00"):
        with pytest.raises(ValueError, match="Forbidden control character"):
            serialize("HTTP/1.1 200 OK", CIMultiDict({"X-A": bad}))
    with pytest.raises(ValueError, match="Forbidden control character"):
        serialize("HTTP/1.1 200 OK\r\nX-Evil: 1", CIMultiDict({"X-A": "caf\udce9"}))
    # a surrogate that stands for no raw byte goes aiohttp's way (dropped), never a 500
    assert serialize("HTTP/1.1 200 OK", CIMultiDict({"X-A": "\udce9\ud800"})).endswith(b"X-A: \r\n\r\n")


@pytest.mark.parametrize("first", [b"", b"part1-"])
async def test_a_slow_body_never_holds_the_head_back(first: bytes) -> None:
    """Body bytes that arrived with the head share its write; the rest of a body still
    on its way is not waited for: the client has the head (and what came) first."""
    release = asyncio.Event()
    whole = b"part1-part2-"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n" + first)
        await writer.drain()
        await release.wait()
        writer.write(whole[len(first) :])
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 12" in head
            assert await asyncio.wait_for(reader.readexactly(len(first)), 5) == first
        finally:
            release.set()  # a failure above must not leave the upstream waiting
        assert await asyncio.wait_for(reader.read(), 5) == whole[len(first) :]
        writer.close()


async def test_forwarded_headers_from_untrusted_peer_are_replaced() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        await raw_exchange(
            tg.port,
            b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4\r\n"
            b"X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4;proto=https\r\nX-Real-IP: 1.2.3.4\r\n"
            b"X-Forwarded-Host: evil.example\r\n\r\n",
        )
        h = seen[0]["headers"]
        assert header_values(h, "X-Forwarded-For") == ["127.0.0.1"]
        assert header_values(h, "X-Forwarded-Proto") == ["http"]
        assert header_values(h, "X-Forwarded-Host") == ["site.example"]
        assert header_values(h, "Forwarded") == ["for=127.0.0.1;proto=http;host=site.example"]
        assert header_values(h, "X-Real-IP") == []
    await server.close()


async def test_forwarded_headers_from_trusted_peer_are_extended() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"trusted_proxies": ["127.0.0.0/8"]}) as tg:
        await raw_exchange(
            tg.port,
            b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4\r\n"
            b"X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4;proto=https\r\n\r\n",
        )
        h = seen[0]["headers"]
        assert header_values(h, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]
        assert header_values(h, "X-Forwarded-Proto") == ["https"]
        assert header_values(h, "Forwarded") == ["for=1.2.3.4;proto=https, for=127.0.0.1;proto=https;host=site.example"]
    await server.close()


async def test_host_rewritten_when_preserve_host_is_off() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"preserve_host": False}) as tg:
        await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n")
        assert header_values(seen[0]["headers"], "Host") == [f"127.0.0.1:{server.port}"]
    await server.close()


async def test_no_invented_request_headers() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        await raw_exchange(tg.port, b"POST /p HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        names = {k.lower() for k, _ in seen[0]["headers"]}
        assert not names & {"user-agent", "accept", "accept-encoding", "content-type", "cookie"}
        assert seen[0]["body_len"] == 3
    await server.close()


async def test_underscore_header_names_dropped_by_default_and_refused_on_request() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    request = b"GET / HTTP/1.1\r\nHost: s\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n"
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        await raw_exchange(tg.port, request)
        assert "x_forwarded_for" not in {k.lower() for k, _ in seen[0]["headers"]}
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"headers_with_underscores": "reject"}) as tg:
        assert split_response(await raw_exchange(tg.port, request))[0] == 400
    await server.close()


# --------------------------------------------------------------------------- no open proxy


async def test_absolute_form_with_matching_host_is_forwarded_in_origin_form() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(
            tg.port, b"GET http://site.example/a?b=1 HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n"
        )
        assert split_response(raw)[0] == 200
        assert seen[0]["path"] == "/a?b=1"
    await server.close()


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET http://169.254.169.254/latest HTTP/1.1",
        b"GET http://site.example:8443/ HTTP/1.1",
        b"GET ftp://site.example/ HTTP/1.1",
    ],
)
async def test_absolute_form_with_foreign_authority_is_refused(request_line: bytes) -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, request_line + b"\r\nHost: site.example\r\nConnection: close\r\n\r\n")
        assert split_response(raw)[0] == 400
        assert seen == []
    await server.close()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"CONNECT site.example:443 HTTP/1.1", 405),
        (b"TRACE / HTTP/1.1", 405),
        (b"get / HTTP/1.1", 405),
        (b"BREW / HTTP/1.1", 405),
    ],
)
async def test_methods_outside_the_allowed_set_are_refused(request_line: bytes, status: int) -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, request_line + b"\r\nHost: site.example\r\nConnection: close\r\n\r\n")
        got, headers, _ = split_response(raw) if raw else (400, [], b"")
        assert got in (status, 400)
        assert seen == []
    await server.close()


# --------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: s\r\nX-A: a\r\n b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: s\r\nHost: t\r\n\r\n",
    ],
    ids=["cl+te", "two-cl", "cl-list", "te-chunked-twice", "te-gzip", "obs-fold", "hex-prefix-chunk", "two-host"],
)
async def test_ambiguous_framing_is_rejected_and_upstream_never_reached(request_bytes: bytes) -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, request_bytes)
        assert split_response(raw)[0] == 400
        assert b"Traceback" not in raw
        assert seen == []
    await server.close()


async def test_oversized_header_is_refused_not_500() -> None:
    server = await start(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}", limits={"max_header_size": 8190}) as tg:
        big = b"a=" + b"x" * 8200
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nCookie: " + big + b"\r\n\r\n")
        assert split_response(raw)[0] in (400, 431)
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(140))
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\n" + many + b"\r\n")
        assert split_response(raw)[0] in (400, 431)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        ok = b"a=" + b"x" * 16000
        raw = await raw_exchange(
            tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\nCookie: " + ok + b"\r\n\r\n"
        )
        assert split_response(raw)[0] == 200
    await server.close()


async def test_three_set_cookie_lines_with_expires_comma_stay_separate_and_ordered() -> None:
    lines = [
        "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/",
        "b=2; HttpOnly",
        "c=3; Max-Age=60",
    ]

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(text="x")
        for line in lines:
            resp.headers.add("Set-Cookie", line)
        return resp

    app = upstream_app()
    app.router.add_get("/", handler)
    server = await start(app)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        _, headers, _ = split_response(raw)
        assert [v for k, v in headers if k.lower() == "set-cookie"] == lines
    await server.close()


async def test_head_and_304_carry_no_body_even_when_upstream_sends_one() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        while True:
            head = await read_request_head(reader)
            up.requests.append(head)
            if head.startswith(b"HEAD"):
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nETag: "e"\r\n\r\n')
            elif b"/304" in head:
                writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n')
            elif b"/bogus304" in head:
                # a bogus body after a 304: the upstream is broken; it must never reach the client
                writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\nBOGUS')
            elif b"/204" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(
            tg.port,
            b"HEAD /x HTTP/1.1\r\nHost: s\r\n\r\n"
            b'GET /304 HTTP/1.1\r\nHost: s\r\nIf-None-Match: "e"\r\n\r\n'
            b"GET /204 HTTP/1.1\r\nHost: s\r\n\r\n"
            b"GET /bogus304 HTTP/1.1\r\nHost: s\r\n\r\n"
            b"GET /after HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
        )
        assert b"BOGUS" not in raw
        responses = raw.split(b"HTTP/1.1 ")[1:]
        assert [r[:3] for r in responses[:3]] == [b"200", b"304", b"204"]
        assert b"Content-Length: 11" in responses[0]
        assert responses[0].endswith(b"\r\n\r\n") and responses[1].endswith(b"\r\n\r\n")
        # the broken 304 is answered 304 or 502, and the next response is intact
        assert responses[3][:3] in (b"304", b"502")
        assert responses[4].startswith(b"200") and responses[4].endswith(b"\r\n\r\nok")


async def test_expect_100_continue_is_answered_and_not_forwarded() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        writer.write(
            b"POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"hello")
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert rest.startswith(b"HTTP/1.1 200")
        assert seen[0]["body_len"] == 5
        assert "expect" not in {k.lower() for k, _ in seen[0]["headers"]}
        # over the limit: 413 and no 100
    async with running_proxy(f"http://127.0.0.1:{server.port}", limits={"max_request_body": 10}) as tg:
        raw = await raw_exchange(
            tg.port, b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n"
        )
        assert raw.startswith(b"HTTP/1.1 413")
        assert len(seen) == 1
    await server.close()


async def test_body_over_the_limit_is_refused_before_and_during_streaming() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}", limits={"max_request_body": 1000}) as tg:
        raw = await raw_exchange(tg.port, b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
        assert split_response(raw)[0] == 413
        chunked = b"".join(b"100\r\n" + b"y" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        raw = await raw_exchange(tg.port, b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        assert split_response(raw)[0] == 413
        assert all(r["body_len"] <= 1000 for r in seen)
        assert not any(r["body_len"] == 2048 for r in seen)
    await server.close()


async def test_streamed_upload_arrives_intact() -> None:
    """A 50 MB chunked upload, hashed at both ends (memory is checked in test_cli_functional)."""
    digests: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        h = hashlib.sha256()
        async for chunk in request.content.iter_chunked(65536):
            h.update(chunk)
        digests.append(h.hexdigest())
        return web.Response(text=h.hexdigest())

    app = upstream_app()
    app.router.add_post("/up", handler)
    server = await start(app)
    block = bytes(range(256)) * 4096
    expected = hashlib.sha256()

    async def body() -> Any:
        for _ in range(50):
            expected.update(block)
            yield block

    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg, aiohttp.ClientSession() as client:
        async with client.post(tg.url + "/up", data=body()) as resp:
            assert resp.status == 200
            assert await resp.text() == expected.hexdigest()
    await server.close()


# --------------------------------------------------------------------------- upstream faults


async def test_upstream_refused_gives_502() -> None:
    from tests.proxytools import free_port

    async with running_proxy(f"http://127.0.0.1:{free_port()}") as tg, aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.get(tg.url + "/") as resp:
            assert resp.status == 502
            text = await resp.text()
        assert "Bad Gateway" in text and "Traceback" not in text
        assert time.monotonic() - started < 3
        async with client.get(tg.admin_url + "/metrics") as resp:
            assert 'tag_gate_upstream_errors_total{kind="connect"} 1.0' in await resp.text()
        async with client.get(tg.admin_url + "/healthz") as resp:
            assert resp.status == 200


async def test_upstream_that_never_answers_gives_504() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        await asyncio.sleep(30)

    async with scripted_upstream(script) as up, running_proxy(up.url, timeouts={"read": 0.5}) as tg:
        async with aiohttp.ClientSession() as client, client.get(tg.url + "/") as resp:
            assert resp.status == 504


async def test_in_flight_gauge_counts_requests_being_handled() -> None:
    answered = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        await answered.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        pending = asyncio.ensure_future(client.get(tg.url + "/"))
        for _ in range(100):
            async with client.get(tg.admin_url + "/metrics") as resp:
                if "tag_gate_in_flight_requests 1.0" in await resp.text():
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the waiting request never showed in tag_gate_in_flight_requests")
        answered.set()
        async with await pending as resp:
            assert resp.status == 200
        async with client.get(tg.admin_url + "/metrics") as resp:
            assert "tag_gate_in_flight_requests 0.0" in await resp.text()


async def test_upstream_header_overflow_gives_502() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=" + b"x" * 20000 + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.url + "/") as resp:
            assert resp.status == 502
        async with client.get(tg.admin_url + "/metrics") as resp:
            assert 'tag_gate_upstream_errors_total{kind="header_overflow"} 1.0' in await resp.text()


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
async def test_upstream_reset_mid_body_aborts_the_client_response(content_length: bool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        if content_length:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n")
            writer.write(b"z" * 5000)
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            writer.write(b"1388\r\n" + b"z" * 5000 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.transport.abort()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET /file HTTP/1.1\r\nHost: s\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200")
        assert not raw.endswith(b"0\r\n\r\n"), "a truncated body must never look complete"
        _, _, body = split_response(raw)
        assert len(body) < 100000
        async with aiohttp.ClientSession() as client:
            with pytest.raises(aiohttp.ClientPayloadError):
                async with client.get(tg.url + "/file") as resp:
                    await resp.read()


async def test_upstream_short_body_under_content_length_is_not_a_clean_response() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + b"q" * 50)
        await writer.drain()
        writer.close()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with client.get(tg.url + "/") as resp:
                await resp.read()


async def test_upstream_short_body_of_unknown_type_is_a_502() -> None:
    """Without a Content-Type the browser sniffs the body, so tag-gate reads it before
    relaying (small bodies of declared length arrive whole): cut short, it is a 502."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"<p>" * 16)
        await writer.drain()
        writer.close()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.url + "/") as resp:
            assert resp.status == 502
            assert b"<p><p>" not in await resp.read()


async def test_early_hints_then_final_response() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.url + "/") as resp:
            assert resp.status == 200
            assert await resp.read() == b"final"


async def test_unasked_101_gives_502() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.url + "/") as resp:
            assert resp.status == 502


async def test_bad_reason_phrase_is_not_copied() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 Fine\xff\xfe Really\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_trailer_fields_never_become_headers() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Set-Cookie\r\n\r\n"
            b"2\r\nok\r\n0\r\nSet-Cookie: _ga=trailer\r\n\r\n"
        )
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.url + "/") as resp:
            assert await resp.read() == b"ok"
            assert "Set-Cookie" not in resp.headers
            assert "Trailer" not in resp.headers


# --------------------------------------------------------------------------- client behaviour


async def test_client_disconnect_mid_download_cancels_the_upstream_request() -> None:
    stopped = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        try:
            for _ in range(10_000):
                await resp.write(b"d" * 65536)
                await asyncio.sleep(0.001)
        except (ConnectionResetError, asyncio.CancelledError):
            stopped.set()
            raise
        return resp

    app = upstream_app()
    app.router.add_get("/big", handler)
    server = await start(app)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: s\r\n\r\n")
        await reader.readexactly(200_000)
        writer.transport.abort()
        await asyncio.wait_for(stopped.wait(), 3)
        await asyncio.sleep(0.1)
        assert tg.service.state.in_flight == 0
    await server.close()


async def test_slow_header_client_is_cut_off() -> None:
    server = await start(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}", timeouts={"header": 0.5}) as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        started = time.monotonic()
        got = b""
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError)):
            for byte in b"GET / HTTP/1.1\r\nHost: s\r\nX-Slow: " + b"a" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof():
                    got = await reader.read()
                    raise asyncio.IncompleteReadError(got, None)
        assert time.monotonic() - started < 3
        assert got.startswith(b"HTTP/1.1 408") or got == b""
        # a good client is unaffected, and a kept-alive connection may idle past the deadline
        async with aiohttp.ClientSession() as client:
            async with client.get(tg.url + "/a") as resp:
                assert resp.status == 200
            await asyncio.sleep(0.8)
            async with client.get(tg.url + "/b") as resp:
                assert resp.status == 200
        async with aiohttp.ClientSession() as client, client.get(tg.admin_url + "/metrics") as resp:
            assert "tag_gate_header_timeouts_total 1.0" in await resp.text()
    await server.close()


async def test_websocket_echo_through_the_proxy() -> None:
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = upstream_app()
    app.router.add_get("/ws", ws_handler)
    server = await start(app)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg, aiohttp.ClientSession() as client:
        async with client.ws_connect(tg.url + "/ws", protocols=("chat",)) as ws:
            assert ws.protocol == "chat"
            await ws.send_str("hello")
            assert (await ws.receive()).data == "echo:hello"
            await ws.send_bytes(b"\x01\x02\x03")
            assert (await ws.receive()).data == b"\x03\x02\x01"
            await ws.close()
    await server.close()


async def test_refused_websocket_upgrade_with_smuggled_body_gets_one_response() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        while True:
            head = await read_request_head(reader)
            up.requests.append(head)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
            await writer.drain()

    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: s\r\n\r\n"
    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(
            tg.port,
            b"GET /ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Content-Length: " + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled,
            timeout=2,
        )
        assert raw.count(b"HTTP/1.1 ") == 1
        assert raw.startswith(b"HTTP/1.1 403")
        assert not any(b"/smuggled" in r for r in up.requests)


async def test_public_listener_never_serves_admin_endpoints() -> None:
    seen: list[dict[str, Any]] = []
    server = await start(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg, aiohttp.ClientSession() as client:
        admin_port = tg.service.admin_address.port  # type: ignore[union-attr]
        async with client.get(tg.url + "/metrics") as resp:
            body = await resp.text()
            assert "tag_gate_requests_total" not in body
        raw = await raw_exchange(
            tg.port,
            f"GET http://127.0.0.1:{admin_port}/metrics HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n".encode(),
        )
        assert split_response(raw)[0] == 400
        async with client.get(tg.admin_url + "/readyz") as resp:
            assert resp.status == 200
        async with client.get(tg.url + "/__tag-gate/nothing-here") as resp:
            assert resp.status == 404
    await server.close()


async def test_access_log_has_one_json_line_per_request() -> None:
    server = await start(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"access_log": True}) as tg:
        async with aiohttp.ClientSession() as client:
            for path in ("/a", "/b?c=1"):
                async with client.get(tg.url + path) as resp:
                    await resp.read()
        records = tg.access_records()
        assert [r["path"] for r in records] == ["/a", "/b?c=1"]
        assert all(r["status"] == 200 and r["method"] == "GET" and "ms" in r for r in records)
        assert all(json.dumps(r) for r in records)
    await server.close()


async def test_metric_series_do_not_grow_with_paths() -> None:
    server = await start(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg, aiohttp.ClientSession() as client:
        async with client.get(tg.admin_url + "/metrics") as resp:
            before = len((await resp.text()).splitlines())
        for i in range(200):
            async with client.get(f"{tg.url}/p/{i}?q={i}") as resp:
                await resp.read()
        async with client.get(tg.admin_url + "/metrics") as resp:
            after = len((await resp.text()).splitlines())
        assert before == after
    await server.close()


async def test_connections_over_the_cap_get_503() -> None:
    server = await start(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}", limits={"max_connections": 2}) as tg:
        held = [await asyncio.open_connection("127.0.0.1", tg.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 503")
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.1)
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200")
    await server.close()
