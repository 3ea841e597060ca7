"""The header steps that put the runtime guard and our CSP into a response (no sockets):
`runtime_guard` and `csp_layer` in `proxy.http.stages.HEADER_STEPS`, table-tested through
`Stages.plan_response` with the response heads a site sends."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.core.config import parse_config
from proxy.html.gate import Additions
from proxy.html.guard_code import frames_code, load_guard_source, split_guard_code
from proxy.http.header_filters import FetchMetadata
from proxy.http.stages import Body, HeaderStep, ResponsePlan, Stages, runtime_guard
from proxy.metrics import Metrics

CSP = "Content-Security-Policy"
CSP_RO = "Content-Security-Policy-Report-Only"
GUARD_START = split_guard_code()[0]


def stages(**html: Any) -> Stages:
    sections: dict[str, Any] = {"html": {"csp": {"sample": 1}, **html}}
    return Stages(parse_config(sections), Metrics())


def plan(
    s: Stages,
    *,
    cookie: str | None = None,
    csp: list[str] = (),  # type: ignore[assignment]
    content_type: str = "text/html; charset=utf-8",
    fetch_dest: str | None = "document",
    path: str = "/p",
    encoding: str | None = None,
    accept: str | None = None,
    status: int = 200,
) -> tuple[ResponsePlan, CIMultiDict[str]]:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": content_type})
    if encoding:
        headers["Content-Encoding"] = encoding
    for value in csp:
        headers.add(CSP, value)
    visitor = s.visitor((cookie,) if cookie else (), None)
    result = s.plan_response(
        method="GET",
        status=status,
        path=path,
        headers=headers,
        visitor=visitor,
        client_accept_encoding=accept,
        host="www.shop.test",
        secure=True,
        conditional_ours=False,
        fetch=FetchMetadata(dest=fetch_dest or ""),
    )
    return result, headers


def markup(additions: Additions) -> str:
    """The head-start markup a page gets (the guard's opening tag, then the rest)."""
    return additions.head_tag + additions.head_start


def metric(s: Stages, name: str, **labels: str) -> float:
    value = s.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_a_gated_page_gets_the_inline_guard_and_the_report_only_policy() -> None:
    s = stages()
    result, headers = plan(s)
    head = markup(result.additions)
    assert result.body is Body.GATE
    assert head.startswith("<script>" + GUARD_START) and head.endswith("');</script>")
    table = json.loads(head[len("<script>" + GUARD_START) + 1 : -len("');</script>")].replace("\\'", "'"))
    assert table["page"] == "www.shop.test" and table["cookie"] == "tg_consent" and table["granted"] == {"essential": 1}
    assert headers[CSP_RO].endswith("report-uri /__tag-gate/csp?k=f0a0d0s0g0; report-to tag-gate")
    assert headers["Reporting-Endpoints"] == 'tag-gate="/__tag-gate/csp?k=f0a0d0s0g0"'
    assert CSP not in headers
    assert metric(s, "tag_gate_guard_pages_total", delivery="inline") == 1
    assert metric(s, "tag_gate_csp_headers_total", mode="report-only", target="page") == 1
    # the same visitor and host share one string (the gated-page cache hashes it)
    assert plan(s)[0].additions.head_start is result.additions.head_start
    # the frames of the markup get guard-frames.js inline (the guard's `f` for that window)
    assert result.additions.frame_markup == f"<script>{frames_code()}</script>"
    assert ".f(window,document.currentScript)" in frames_code() and "\n    f: (w, s) => {" in load_guard_source()


@pytest.mark.parametrize(
    ("cookie", "sections"),
    [
        ("tg_consent=functional.analytics.advertising.social", {}),  # nothing refused: the page passes
        (None, {"server": {"mode": "report-only"}}),
    ],
)
def test_pages_the_gate_passes_get_neither(cookie: str | None, sections: dict[str, Any]) -> None:
    s = Stages(parse_config({"html": {"csp": {"sample": 1}}, **sections}), Metrics())
    result, headers = plan(s, cookie=cookie)
    assert markup(result.additions) == "" and CSP_RO not in headers and "Reporting-Endpoints" not in headers


def test_the_pages_nonce_goes_on_the_guard() -> None:
    s = stages()
    result, headers = plan(s, csp=["script-src 'nonce-r4nd0m' 'strict-dynamic'; object-src 'none'"])
    assert markup(result.additions).startswith('<script nonce="r4nd0m">' + GUARD_START)
    # only the tag is made per response: what follows it is one string for every nonce
    # (hashed once, and spliced compressed from a form made once)
    other, _ = plan(s, csp=["script-src 'nonce-0ther' 'strict-dynamic'"])
    plain, _ = plan(s)
    assert other.additions.head_tag == '<script nonce="0ther">' and plain.additions.head_tag == "<script>"
    assert other.additions.frame_markup == f'<script nonce="0ther">{frames_code()}</script>'
    assert other.additions.head_start is result.additions.head_start is plain.additions.head_start
    # our policy is a second header; the site's stays as it was
    assert headers.getall(CSP) == ["script-src 'nonce-r4nd0m' 'strict-dynamic'; object-src 'none'"]


def test_a_policy_blocking_inline_but_allowing_self_gets_the_external_guard(caplog: pytest.LogCaptureFixture) -> None:
    s = stages()
    with caplog.at_level(logging.WARNING, logger="tag_gate"):
        for _ in range(3):
            result, _ = plan(s, csp=["script-src 'self'"], path="/strict")
    head = markup(result.additions)
    assert head.startswith('<script src="/__tag-gate/guard.js?k=f0a0d0s0g0&v=') and head.endswith('"></script>')
    assert [r.getMessage() for r in caplog.records if "/strict" in r.getMessage()] == [
        "runtime guard: the Content-Security-Policy of /strict blocks inline scripts without a nonce tag-gate can"
        " use; the guard is loaded from /__tag-gate/guard.js instead (allowed by 'self')"
    ]
    assert metric(s, "tag_gate_guard_pages_total", delivery="external") == 3
    url, body = s.layers.external(s.visitor((), None).consent)
    assert head == f'<script src="{url}"></script>' and s.layers.external_body("f0a0d0s0g0") is body
    assert result.additions.frame_markup == '<script src="/__tag-gate/guard-frames.js"></script>'
    assert body.startswith(GUARD_START.encode()) and b'"page":null' in body


def test_a_policy_allowing_neither_gets_no_guard_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    s = stages()
    with caplog.at_level(logging.WARNING, logger="tag_gate"):
        result, headers = plan(s, csp=["script-src 'sha256-AAAA'"], path="/hashed")
    assert markup(result.additions) == "" and CSP_RO in headers
    assert metric(s, "tag_gate_guard_pages_total", delivery="none") == 1
    assert any("allows neither" in r.getMessage() and "/hashed" in r.getMessage() for r in caplog.records)


def test_report_to_only_on_https_pages() -> None:
    s = stages()
    visitor = s.visitor((), None)
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "text/html"})
    args: dict[str, Any] = dict(method="GET", status=200, path="/", visitor=visitor, client_accept_encoding=None)
    s.plan_response(headers=headers, host="h", secure=False, conditional_ours=False, **args)
    assert (
        headers[CSP_RO].endswith("; report-uri /__tag-gate/csp?k=f0a0d0s0g0") and "Reporting-Endpoints" not in headers
    )


def test_guard_off_keeps_the_csp_layer_and_csp_off_keeps_the_guard() -> None:
    result, headers = plan(stages(guard={"enabled": False}))
    assert markup(result.additions) == "" and CSP_RO in headers
    result, headers = plan(stages(csp={"mode": "off"}))
    assert markup(result.additions).startswith("<script>") and CSP_RO not in headers


def test_enforce_mode_adds_a_second_policy_never_touching_the_sites() -> None:
    s = stages(csp={"mode": "enforce", "vendors": ["google-analytics"], "sample": 1})
    site = "default-src 'self' https:; script-src 'nonce-abc'"
    _, headers = plan(s, cookie="tg_consent=analytics", csp=[site])
    values = headers.getall(CSP)
    # Browsers enforce every policy they get: a request must pass the site's AND ours, so
    # ours can only take away, never allow what the site's forbids.
    assert values[0] == site and len(values) == 2
    assert values[1].startswith("connect-src 'self' data: blob: analytics.google.com *.analytics.google.com")
    assert CSP_RO not in headers


def test_worker_scripts_get_the_policy_with_script_src_and_vary_on_their_destination() -> None:
    s = stages()
    _, headers = plan(s, content_type="text/javascript", fetch_dest="worker")
    assert "script-src 'self' data: blob: 'unsafe-eval' 'wasm-unsafe-eval'" in headers[CSP_RO]
    assert "Sec-Fetch-Dest" in headers["Vary"] and "Cookie" in headers["Vary"]
    assert headers["Cache-Control"].startswith("private")
    assert metric(s, "tag_gate_csp_headers_total", mode="report-only", target="worker") == 1
    _, plain = plan(s, content_type="text/javascript", fetch_dest="script")
    assert CSP_RO not in plain and "Vary" not in plain
    _, granted = plan(s, content_type="text/javascript", fetch_dest="worker", cookie="tg_consent=f.a")
    assert CSP_RO in granted  # "f.a" grants nothing known: still refusable


@pytest.mark.parametrize("sample", [1, 0.0001])
def test_a_304_for_a_worker_script_says_the_vary_its_200_says(sample: float) -> None:
    """A cache replaces the stored response's `Vary` with a 304's (RFC 9110 15.4.5): the
    304 for a worker script says `Sec-Fetch-Dest, Cookie, Sec-GPC` as its 200 does (when
    that was sampled: a 304 cannot tell), or a stored script with one visitor's policy
    would serve another consent (a site's `Vary: Accept-Encoding` on the 304 would be the
    stored response's whole `Vary`). It gets no policy of its own: the stored one stays."""
    s = stages(csp={"sample": sample})
    _, headers = plan(s, content_type="text/javascript", fetch_dest="worker", status=304)
    assert {v.strip() for v in headers["Vary"].split(",")} == {"Sec-Fetch-Dest", "Cookie", "Sec-GPC"}
    assert CSP_RO not in headers and headers["Cache-Control"].startswith("private")
    _, plain = plan(s, content_type="text/javascript", fetch_dest="script", status=304)
    assert "Vary" not in plain


def test_the_header_goes_on_the_sampled_fraction_of_pages() -> None:
    s = stages(csp={"sample": 0.25})
    got = [CSP_RO in plan(s)[1] for _ in range(12)]
    assert got == [True, False, False, False] * 3
    assert all(markup(plan(s)[0].additions) for _ in range(3))  # the guard is not sampled


def test_a_configured_cookie_name_reaches_the_guard() -> None:
    s = Stages(parse_config({"consent": {"cookie_name": "site_consent"}}), Metrics())
    result, _ = plan(s, cookie="site_consent=analytics")
    head = markup(result.additions)
    assert '\\"cookie\\":\\"site_consent\\"' not in head and '"cookie":"site_consent"' in head
    assert '"granted":{"analytics":1,"essential":1}' in head


def test_the_guard_comes_before_anything_else_added_at_the_head() -> None:
    s = stages()
    visitor = s.visitor((), None)
    h = HeaderStep(
        stages=s,
        method="GET",
        status=200,
        path="/",
        headers=CIMultiDict({"Content-Type": "text/html"}),
        visitor=visitor,
        client_accept_encoding=None,
        host="www.shop.test",
        secure=True,
        conditional_ours=False,
        plan=ResponsePlan(headers=CIMultiDict(), body=Body.GATE, additions=Additions("<x-head>", "<x-end>")),
    )
    runtime_guard(h)
    assert markup(h.plan.additions).startswith("<script>") and markup(h.plan.additions).endswith("<x-head>")
    assert h.plan.additions.body_end == "<x-end>"


@pytest.mark.parametrize(
    ("encoding", "accept", "guard", "out"),
    [
        ("br", "gzip, deflate, br, zstd", True, "zstd"),
        ("br", "gzip, deflate, br", True, "gzip"),
        ("br", "br", True, "br"),
        ("br", "gzip, br, zstd;q=0", True, "gzip"),
        ("br", "gzip, deflate, br, zstd", False, "br"),  # no guard: the site's coding
        ("gzip", "gzip, deflate, br, zstd", True, "gzip"),
        ("zstd", "gzip, deflate, br, zstd", True, "zstd"),
    ],
)
def test_a_brotli_page_that_gets_the_guard_leaves_in_a_coding_it_can_be_spliced_into(
    encoding: str, accept: str, guard: bool, out: str
) -> None:
    """Brotli has no seam for the guard's compressed form, so compressing the guard
    again cost 0.4 ms a page: a br page that gets the guard leaves in zstd, or gzip,
    when the client takes one; any other page keeps the site's coding."""
    s = stages() if guard else stages(guard={"enabled": False})
    result, headers = plan(s, encoding=encoding, accept=accept)
    assert result.body is Body.GATE
    assert bool(markup(result.additions)) is guard
    assert (result.decode, result.encode, headers["Content-Encoding"]) == (encoding, out, out)


def test_the_operator_can_prefer_the_external_guard(caplog: pytest.LogCaptureFixture) -> None:
    """`[html.guard] delivery = "external"`: pages carry a `<script src>` of the guard,
    which the browser caches, instead of 21 KB inline; a policy that lets only inline
    scripts run still gets it inline. The operator's choice is counted, not logged."""
    s = stages(guard={"delivery": "external"})
    with caplog.at_level(logging.WARNING, logger="tag_gate"):
        result, _ = plan(s)
    head = markup(result.additions)
    url = head[len('<script src="') : -len('"></script>')]
    assert head == f'<script src="{url}"></script>' and url.startswith("/__tag-gate/guard.js?k=")
    assert s.layers.external_body(url.split("k=")[1].split("&")[0]) is not None
    assert metric(s, "tag_gate_guard_pages_total", delivery="external") == 1
    assert not caplog.records
    result, _ = plan(s, csp=["script-src 'unsafe-inline'"])
    assert markup(result.additions).startswith("<script>" + GUARD_START)
    nonce, _ = plan(s, csp=["script-src 'nonce-r4nd0m' 'strict-dynamic'"])
    assert markup(nonce.additions) == f'<script src="{url}" nonce="r4nd0m"></script>'
