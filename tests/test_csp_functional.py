"""The runtime layers through the running proxy, against real loopback servers: the guard
inserted first in `<head>`, the external guard route, the CSP report endpoint with its
limits, and the admin listener's gap listing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.html.guard_code import split_guard_code
from proxy.http.guard_errors import read_guard_errors
from tests.conftest import TagGateFactory, UpstreamFactory

PAGE = (
    b"<!doctype html><html><head><title>t</title>"
    b'<script src="https://connect.facebook.net/en_US/fbevents.js"></script></head>'
    b"<body><p>hello</p></body></html>"
)
GUARD_START = split_guard_code()[0].encode()
CSP_RO = "Content-Security-Policy-Report-Only"


def site(csp: str | None = None) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        resp = web.Response(body=PAGE, content_type="text/html")
        if csp:
            resp.headers["Content-Security-Policy"] = csp
        return resp

    app = web.Application()
    app.router.add_get("/", page)
    return app


async def get(url: str, **headers: str) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


async def post(url: str, body: bytes, content_type: str, **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as client,
        client.post(url, data=body, headers={"Content-Type": content_type, **headers}) as resp,
    ):
        await resp.read()
        return resp.status


async def metrics(admin_url: str, prefix: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as client, client.get(admin_url + "/metrics") as resp:
        out = {}
        for line in (await resp.text()).splitlines():
            if line.startswith(prefix):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


async def test_the_guard_is_the_first_child_of_head(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}", html={"csp": {"sample": 1}})
    status, headers, body = await get(tg.url + "/")
    assert status == 200
    assert body.startswith(b"<!doctype html><html><head><script>" + GUARD_START)
    assert body.index(b"</script><title>t</title>") < body.index(b"<p>hello")
    assert b"fbevents.js" not in body.split(b"</script>", 1)[1]  # the gate still removed the tag
    # plain http: report-uri alone (with report-to, Chromium would send nothing from an insecure page)
    assert (
        headers[CSP_RO].endswith("; report-uri /__tag-gate/csp?k=f0a0d0s0g0") and "Reporting-Endpoints" not in headers
    )
    # everything granted: neither layer
    status, headers, body = await get(tg.url + "/", Cookie="tg_consent=functional.analytics.advertising.social")
    assert body == PAGE and CSP_RO not in headers


async def test_external_guard_for_a_self_only_policy(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    server = await upstream(site("script-src 'self'; object-src 'none'"))
    tg = await tag_gate(f"http://127.0.0.1:{server.port}")
    _, _, body = await get(tg.url + "/", Cookie="tg_consent=analytics")
    start = body.index(b'<script src="/__tag-gate/guard.js?k=f0a1d0s0g0&v=')
    url = body[start + 13 : body.index(b'"', start + 13)].decode()
    status, headers, script = await get(tg.url + url, Cookie="tg_consent=analytics")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert (
        headers["Cache-Control"] == "private, max-age=86400, immutable"
        and headers["X-Content-Type-Options"] == "nosniff"
    )
    assert script.startswith(GUARD_START) and b'\\"analytics\\"' not in script
    assert b'"granted":{"analytics":1,"essential":1}' in script and b'"page":null' in script
    # a key this config never wrote: the request's own consent, not to be kept
    status, headers, other = await get(tg.url + "/__tag-gate/guard.js?k=f9a9&v=0")
    assert status == 200 and headers["Cache-Control"] == "private, no-store" and b'"granted":{"essential":1}' in other
    status, _, release = await get(tg.url + "/__tag-gate/guard-release.js")
    assert status == 200 and b"G.release" in release
    # the frames of the markup get the guard's hooks from here under such a policy
    status, _, frames = await get(tg.url + "/__tag-gate/guard-frames.js")
    assert status == 200 and b".f(window, document.currentScript)" in frames
    # an import map's refused addresses and prefixes: one empty module, whatever the path
    for path in ("/__tag-gate/blocked.js", "/__tag-gate/blocked/action/0?ti=1", "/__tag-gate/blocked/a/b.js"):
        status, headers, module = await get(tg.url + path)
        assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8", path
        assert module.startswith(b"/*") and module.rstrip().endswith(b"*/"), module
    status, _, _ = await get(tg.url + "/__tag-gate/blocked")
    assert status == 404


async def test_the_guard_table_route_gives_the_table_of_a_stated_consent(
    upstream: UpstreamFactory, tag_gate: TagGateFactory
) -> None:
    """guard-release.js asks /__tag-gate/guard-table for the table of the consent the page
    has now (a category granted at load withdrawn): the table of the categories named,
    whatever the cookie says; unknown names grant nothing; Sec-GPC applies; never cached."""
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}")
    status, headers, body = await get(tg.url + "/__tag-gate/guard-table?g=functional", Cookie="tg_consent=analytics")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "private, no-store" and headers["X-Content-Type-Options"] == "nosniff"
    table = json.loads(body)
    assert table["granted"] == {"essential": 1, "functional": 1} and table["page"] is None
    refused = {category for category, _ in table["vendors"]}
    assert "analytics" in refused and "functional" not in refused
    for query in ("?g=", "?g=bogus.%00.essential", "?g=" + "x" * 5000):
        status, _, body = await get(tg.url + "/__tag-gate/guard-table" + query)
        assert status == 200 and json.loads(body)["granted"] == {"essential": 1}, query
    # Sec-GPC refuses advertising (the default gpc_refuses) even when the page states it
    _, _, body = await get(tg.url + "/__tag-gate/guard-table?g=advertising.analytics", **{"Sec-GPC": "1"})
    assert json.loads(body)["granted"] == {"analytics": 1, "essential": 1}
    # without g: the request's own consent, read from its cookies as for a page (a
    # consent manager's cookie here)
    cookiebot = "CookieConsent={stamp:%27x%27%2Cnecessary:true%2Cpreferences:false%2Cstatistics:true%2Cmarketing:false}"
    _, _, body = await get(tg.url + "/__tag-gate/guard-table", Cookie=cookiebot)
    assert json.loads(body)["granted"] == {"analytics": 1, "essential": 1}
    status = await post(tg.url + "/__tag-gate/guard-table?g=analytics", b"", "text/plain")
    assert status == 404
    counts = await metrics(tg.admin_url, "tag_gate_guard_tables_total")
    assert counts == {
        'tag_gate_guard_tables_total{asked="stated"}': 5.0,
        'tag_gate_guard_tables_total{asked="cookies"}': 1.0,
    }, counts
    # with the guard off, no route
    off = await tag_gate(f"http://127.0.0.1:{server.port}", html={"guard": {"enabled": False}})
    status, _, _ = await get(off.url + "/__tag-gate/guard-table?g=analytics")
    assert status == 404


CSP_REPORT = {
    "csp-report": {
        "document-uri": "https://www.shop.test/p?session=abc",
        "blocked-uri": "https://www.facebook.com/tr?id=1&uid=secret",
        "effective-directive": "img-src",
        "disposition": "report",
    }
}
BATCH = [
    {
        "type": "csp-violation",
        "body": {
            "documentURL": "https://www.shop.test/p",
            "blockedURL": f"https://{host}/c?visitor=secret",
            "effectiveDirective": "connect-src",
            "disposition": "report",
        },
    }
    for host in ("collector.unknown.test", "collector.unknown.test", "www.google-analytics.com", "www.shop.test")
]


async def test_reports_are_classified_counted_and_listed(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}")
    endpoint = tg.url + "/__tag-gate/csp"
    # the key in the report URL says what the page was served under (analytics granted)
    for body, content_type in ((CSP_REPORT, "application/csp-report"), (BATCH, "application/reports+json")):
        status = await post(endpoint + "?k=f0a1d0s0g0", json.dumps(body).encode(), content_type, Host="www.shop.test")
        assert status == 204
    m = await metrics(tg.admin_url, "tag_gate_")
    assert m['tag_gate_csp_reports_total{result="leak"}'] == 1
    assert m['tag_gate_runtime_leaks_total{category="advertising",vendor="meta-pixel"}'] == 1
    assert m['tag_gate_csp_reports_total{result="gap"}'] == 2 and m["tag_gate_catalogue_gaps_total"] == 2
    assert m['tag_gate_csp_reports_total{result="granted"}'] == 1  # analytics, granted by the key
    assert m['tag_gate_csp_reports_total{result="first_party"}'] == 1
    assert m["tag_gate_catalogue_gap_hosts"] == 1
    async with aiohttp.ClientSession() as client, client.get(tg.admin_url + "/csp-gaps") as resp:
        listing = await resp.json()
    (gap,) = listing["gaps"]
    assert gap["host"] == "collector.unknown.test" and gap["count"] == 2 and gap["directive"] == "connect-src"
    assert gap["example"] == "https://collector.unknown.test/c" and gap["page"] == "https://www.shop.test/p"
    assert listing["leaks"][0]["vendor"] == "meta-pixel" and "secret" not in json.dumps(listing)
    # without a key the request's own cookies say what was granted
    await post(endpoint, json.dumps(CSP_REPORT).encode(), "application/csp-report", Cookie="tg_consent=advertising")
    await post(endpoint + "?k=bogus", json.dumps(CSP_REPORT).encode(), "application/csp-report")
    m = await metrics(tg.admin_url, "tag_gate_csp_reports_total")
    assert (
        m['tag_gate_csp_reports_total{result="granted"}'] == 2 and m['tag_gate_csp_reports_total{result="leak"}'] == 2
    )
    # granted after the page loaded (released in place): the key refused it, the cookie grants it now
    cookie = "tg_consent=analytics.advertising"
    await post(endpoint + "?k=f0a1d0s0g0", json.dumps(CSP_REPORT).encode(), "application/csp-report", Cookie=cookie)
    m = await metrics(tg.admin_url, "tag_gate_csp_reports_total")
    assert (
        m['tag_gate_csp_reports_total{result="granted"}'] == 3 and m['tag_gate_csp_reports_total{result="leak"}'] == 2
    )


async def test_the_endpoint_refuses_what_it_should(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    server = await upstream(site())
    tg = await tag_gate(
        f"http://127.0.0.1:{server.port}",
        html={"csp": {"max_report_size": 200, "report_rate": 0.01, "report_burst": 4}},
    )
    endpoint = tg.url + "/__tag-gate/csp"
    status, headers, _ = await get(endpoint)
    assert status == 405 and headers["Allow"] == "POST"
    assert await post(endpoint, b"x" * 500, "application/csp-report") == 413
    assert await post(endpoint, b"{", "application/csp-report") == 400
    assert await post(endpoint, b"{}", "text/plain") == 400
    assert await post(endpoint, json.dumps(CSP_REPORT).encode(), "application/csp-report") == 204
    assert await post(endpoint, json.dumps(CSP_REPORT).encode(), "application/csp-report") == 429
    m = await metrics(tg.admin_url, "tag_gate_csp_reports_total")
    assert m['tag_gate_csp_reports_total{result="too_large"}'] == 1
    assert m['tag_gate_csp_reports_total{result="invalid"}'] == 2
    assert m['tag_gate_csp_reports_total{result="rate_limited"}'] == 1


async def test_the_endpoint_is_gone_when_the_layer_is_off(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}", html={"csp": {"mode": "off"}})
    assert await post(tg.url + "/__tag-gate/csp", json.dumps(CSP_REPORT).encode(), "application/csp-report") == 404
    _, headers, _ = await get(tg.url + "/")
    assert CSP_RO not in headers


@pytest.mark.parametrize(
    ("path", "start"), [("csp", b'{"csp-report":'), ("guard-errors", b"1 Ty")], ids=["csp", "guard-errors"]
)
async def test_a_slow_or_huge_report_costs_the_endpoint_nothing(
    upstream: UpstreamFactory, tag_gate: TagGateFactory, path: str, start: bytes
) -> None:
    """A report body that stops arriving gets 408 after `timeouts.client_body`; one of
    8 MB announced is refused at the cap (413) without reading the rest. Both public
    report endpoints: CSP reports and the guard's errors."""
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}", timeouts={"client_body": 0.5})
    port = int(tg.url.rsplit(":", 1)[1])
    head = f"POST /__tag-gate/{path} HTTP/1.1\r\nHost: s\r\nContent-Type: text/plain\r\nContent-Length: {{}}\r\n\r\n"

    async def exchange(length: int, body: bytes) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(head.format(length).encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        return answer, time.monotonic() - started

    stalled, took = await exchange(40, start)
    assert stalled.startswith(b"HTTP/1.1 408") and took < 3, (stalled, took)
    huge, _ = await exchange(8_000_000, b"x" * 70_000)
    assert huge.startswith(b"HTTP/1.1 413"), huge


# --------------------------------------------------------------------------- the guard's own errors


@pytest.mark.parametrize(
    ("body", "read"),
    [
        (b"1 TypeError", (1, "TypeError")),
        (b"3 SecurityError\n", (3, "SecurityError")),
        (b"250 RangeError", (100, "RangeError")),  # a page's count is capped
        (b"2 MyOwnError", (2, "other")),  # names outside the list: a bounded label set
        (b"0 TypeError", None),
        (b"1", None),
        (b"1 Type Error", None),
        (b"-1 TypeError", None),
        (b"1 TypeError; DROP", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_a_guard_error_report_is_read_or_refused(body: bytes, read: tuple[int, str] | None) -> None:
    assert read_guard_errors(body) == read


async def test_the_guard_error_endpoint_counts_pages_errors_within_its_limits(
    upstream: UpstreamFactory, tag_gate: TagGateFactory
) -> None:
    """`/__tag-gate/guard-errors` counts what pages report of the guard's own errors by
    name, refuses what is not a report, a body over 64 bytes (unread) and anything but a
    POST, and answers 429 once its bucket (a burst of 50) is empty."""
    server = await upstream(site())
    tg = await tag_gate(f"http://127.0.0.1:{server.port}")
    url = tg.url + "/__tag-gate/guard-errors"
    assert await post(url, b"2 TypeError", "text/plain") == 204
    assert await post(url, b"1 WeirdError", "text/plain;charset=UTF-8") == 204
    assert await post(url, b"lots of errors", "text/plain") == 400
    assert await post(url, b"1 TypeError" + b" " * 100, "text/plain") == 413
    assert (await get(url))[0] == 405
    counts = await metrics(tg.admin_url, "tag_gate_guard_error")
    assert counts['tag_gate_guard_errors_total{error="TypeError"}'] == 2
    assert counts['tag_gate_guard_errors_total{error="other"}'] == 1
    assert counts['tag_gate_guard_error_reports_total{result="accepted"}'] == 2
    assert counts['tag_gate_guard_error_reports_total{result="invalid"}'] == 1
    assert counts['tag_gate_guard_error_reports_total{result="too_large"}'] == 1
    statuses = [await post(url, b"1 TypeError", "text/plain") for _ in range(100)]
    assert statuses.count(429) >= 1 and statuses[0] == 204, statuses
    off = await tag_gate(f"http://127.0.0.1:{server.port}", html={"guard": {"enabled": False}})
    assert await post(off.url + "/__tag-gate/guard-errors", b"1 TypeError", "text/plain") == 404
