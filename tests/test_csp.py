"""The CSP layer's pure parts: reading the site's policy for the guard, writing ours,
reading and classifying reports, the gap listing and the rate limit."""

from __future__ import annotations

import json

import pytest

from proxy.core.catalog import Vendor, make_catalog
from proxy.core.config import ConfigError, make_policy, parse_config
from proxy.core.consent import read_consent
from proxy.core.csp import CSP_DIRECTIVES, CspHeaders, CspLayer, decide_guard_delivery, host_sources, parse_policies
from proxy.core.csp_reports import (
    CspReport,
    GapTable,
    ReportSink,
    TokenBucket,
    Verdict,
    classify_report,
    parse_csp_reports,
    strip_query,
)

# --------------------------------------------------------------------------- the site's policy


def test_policies_are_split_on_commas_and_the_first_directive_counts() -> None:
    policies = parse_policies(["script-src 'self'; SCRIPT-SRC *, img-src a.test", "default-src 'none'"])
    assert policies == [{"script-src": ("'self'",)}, {"img-src": ("a.test",)}, {"default-src": ("'none'",)}]
    assert parse_policies(["", " ; ,"]) == []


DELIVERY = [
    # (CSP header values, scheme) -> (how, nonce)
    ([], "https", "inline", None),
    (["img-src 'self'"], "https", "inline", None),
    (["script-src 'nonce-abc' 'strict-dynamic'; object-src 'none'"], "https", "inline", "abc"),
    (["default-src 'self' 'nonce-x1'"], "https", "inline", "x1"),
    (["script-src 'self' 'unsafe-inline'"], "https", "inline", None),
    # a nonce or hash makes browsers ignore 'unsafe-inline'; the nonce itself still works
    (["script-src 'unsafe-inline' 'sha256-AAAA' 'self'"], "https", "external", None),
    (["script-src 'unsafe-inline' 'nonce-n'"], "https", "inline", "n"),
    # script-src-elem governs <script> before script-src
    (["script-src 'unsafe-inline'; script-src-elem 'self'"], "https", "external", None),
    (["script-src 'self'"], "https", "external", None),
    (["default-src 'self'"], "https", "external", None),
    (["script-src *"], "https", "external", None),
    (["script-src https:"], "https", "external", None),
    (["script-src http:"], "https", "external", None),
    (["script-src https:"], "http", "none", None),
    (["script-src cdn.example"], "https", "none", None),
    (["script-src 'sha256-AAAA' 'strict-dynamic' 'self'"], "https", "none", None),
    (["script-src 'none'"], "https", "none", None),
    # two policies: both must allow it; one nonce must satisfy both
    (["script-src 'nonce-a'", "script-src 'nonce-a' 'self'"], "https", "inline", "a"),
    (["script-src 'nonce-a'", "script-src 'nonce-b'"], "https", "none", None),
    (["script-src 'unsafe-inline' 'self'", "default-src 'self'"], "https", "external", None),
    (["script-src 'unsafe-inline'", "img-src 'none'"], "https", "inline", None),
]


@pytest.mark.parametrize(("values", "scheme", "how", "nonce"), DELIVERY)
def test_guard_delivery_under_the_sites_policy(values: list[str], scheme: str, how: str, nonce: str | None) -> None:
    delivery = decide_guard_delivery(values, scheme)
    assert (delivery.how, delivery.nonce) == (how, nonce)
    assert bool(delivery.reason) == (how != "inline")


def test_guard_delivery_is_memoised_with_each_responses_own_nonce() -> None:
    """A strict-CSP site sends the same policy with a new nonce every response: the
    decision is kept per policy text with the nonces written as their place, and each
    response gets its own nonce back; which nonces are the same still counts."""
    for n in ("abc", "Zx9_-", "0", "1"):
        delivery = decide_guard_delivery([f"script-src 'nonce-{n}' 'strict-dynamic'; object-src 'none'"])
        assert (delivery.how, delivery.nonce) == ("inline", n)
    for a, b in (("p", "q"), ("r", "s")):
        assert decide_guard_delivery([f"script-src 'nonce-{a}'", f"script-src 'nonce-{b}'"]).how == "none"
        same = decide_guard_delivery([f"script-src 'nonce-{a}'", f"script-src 'self' 'nonce-{a}'"])
        assert (same.how, same.nonce) == ("inline", a)
    # nonces that read like the places they are written as
    assert decide_guard_delivery(["script-src 'nonce-1' 'nonce-0'"]).nonce == "1"
    assert decide_guard_delivery(["script-src 'nonce-0' 'nonce-1'"]).nonce == "0"
    external = decide_guard_delivery(["script-src 'nonce-e1' 'self'; script-src-elem 'self' 'nonce-e1'"], external=True)
    assert (external.how, external.nonce) == ("external", "e1")


EXTERNAL_FIRST = [
    # [html.guard] delivery = "external": the cached script wherever the policies let it run
    ([], "https", "external", None),
    (["img-src 'self'"], "https", "external", None),
    (["script-src 'nonce-abc' 'strict-dynamic'; object-src 'none'"], "https", "external", "abc"),
    (["script-src 'self'"], "https", "external", None),
    # else inline, as the policy allows it
    (["script-src 'unsafe-inline'"], "https", "inline", None),
    (["script-src 'unsafe-inline' 'nonce-n'; script-src-elem 'unsafe-inline'"], "https", "inline", None),
    (["script-src cdn.example"], "https", "none", None),
]


@pytest.mark.parametrize(("values", "scheme", "how", "nonce"), EXTERNAL_FIRST)
def test_guard_delivery_when_the_operator_prefers_the_external_script(
    values: list[str], scheme: str, how: str, nonce: str | None
) -> None:
    delivery = decide_guard_delivery(values, scheme, external=True)
    assert (delivery.how, delivery.nonce) == (how, nonce)
    assert bool(delivery.reason) == (how == "none")  # the operator's choice is not logged


# --------------------------------------------------------------------------- our policy


def test_host_sources_drop_hosts_under_a_listed_parent() -> None:
    assert host_sources(["a.example", "x.a.example", "B.example.", "cdn.b.example", "ab.example"]) == [
        "a.example",
        "*.a.example",
        "ab.example",
        "*.ab.example",
        "b.example",
        "*.b.example",
    ]


VENDORS = (
    Vendor(id="ga", name="GA", category="analytics", hosts=("google-analytics.com",)),
    Vendor(id="px", name="Pixel", category="advertising", hosts=("px.test",), urls=("social.test/tr?id=*",)),
    Vendor(id="soc", name="Social", category="social", hosts=("social.test",)),
    Vendor(id="cdn", name="CDN", category="essential", hosts=("cdn.test", "a.cdn.test")),
)


def value(layer: CspLayer, cookie: str | None, worker: bool = False) -> str:
    return CspHeaders(layer, VENDORS, ["static.shop.test"]).value(read_consent(cookie, None), worker)


def test_default_policy_lists_the_site_only_and_reports_by_key() -> None:
    text = value(CspLayer(), "tg_consent=analytics")
    own = "'self' data: blob: static.shop.test *.static.shop.test"
    assert text.split("; ") == [
        *(f"{d} {own}" for d in CSP_DIRECTIVES),
        "report-uri /__tag-gate/csp?k=f0a1d0s0g0",
        "report-to tag-gate",
    ]
    assert "script-src" not in text and "default-src" not in text


def test_granted_vendors_and_essential_ones_are_listed_with_url_prefixes() -> None:
    layer = CspLayer(vendors="granted", directives=("connect-src",))
    none = value(layer, None)
    assert "cdn.test *.cdn.test" in none and "a.cdn.test" not in none and "google-analytics" not in none
    ads = value(layer, "tg_consent=advertising")
    # the pixel's URL prefix on the refused social host: the path, exact and as a prefix, no query
    assert "*.social.test/tr *.social.test/tr/ social.test/tr social.test/tr/;" in ads
    assert " social.test " not in ads and "px.test *.px.test" in ads
    both = value(layer, "tg_consent=advertising.social")
    assert "/tr" not in both and "social.test *.social.test" in both


def test_a_vendor_list_narrows_what_is_listed() -> None:
    text = value(CspLayer(vendors=("ga", "soc")), "tg_consent=analytics")
    assert "google-analytics.com" in text and "social.test" not in text and "cdn.test" not in text


def test_report_to_is_left_out_of_insecure_pages() -> None:
    headers = CspHeaders(CspLayer(), VENDORS, [])
    consent = read_consent(None, None)
    assert "report-to" not in headers.value(consent, secure=False)
    assert headers.value(consent, secure=False).endswith("report-uri /__tag-gate/csp?k=f0a0d0s0g0")


def test_worker_scripts_also_get_script_src() -> None:
    text = value(CspLayer(), None, worker=True)
    assert "script-src 'self' data: blob: static.shop.test *.static.shop.test 'unsafe-eval' 'wasm-unsafe-eval'" in text


def test_enforce_mode_writes_the_enforcing_header_and_keys_are_remembered() -> None:
    headers = CspHeaders(CspLayer(mode="enforce", vendors="granted"), VENDORS, [])
    consent = read_consent("tg_consent=social", None)
    assert headers.header == "Content-Security-Policy"
    assert headers.value(consent) is headers.value(consent)
    assert headers.granted(consent.key) == consent.granted and headers.granted("nope") is None
    assert headers.granted("f1a0d1s0g1") == frozenset({"essential", "functional", "advertising"})
    assert headers.granted("f1a0d1s0g1x123abc") is None  # custom categories: only keys it wrote
    assert CspHeaders.endpoints(consent) == f'tag-gate="/__tag-gate/csp?k={consent.key}"'
    assert CspHeaders(CspLayer(), VENDORS, []).header == "Content-Security-Policy-Report-Only"


def test_header_sizes_for_the_full_catalogue() -> None:
    """Not a budget: prints what listing every granted vendor would weigh (README)."""
    vendors = make_catalog().vendors
    for name, layer in (("none", CspLayer()), ("granted", CspLayer(vendors="granted"))):
        headers = CspHeaders(layer, vendors, [])
        sizes = {
            c or "none": len(headers.value(read_consent(f"tg_consent={c}" if c else None, None)))
            for c in ("", "analytics", "functional.analytics.social")
        }
        print(f"csp header, vendors={name}: {sizes}")
        if name == "none":
            assert max(sizes.values()) < 600


# --------------------------------------------------------------------------- config


def test_config_defaults_and_problems_have_their_paths() -> None:
    config = parse_config({})
    assert config.html.guard.enabled and config.html.csp.mode == "report-only" and config.html.csp.sample == 0.1
    assert config.html.guard.delivery == "inline"
    with pytest.raises(ConfigError) as exc:
        parse_config(
            {
                "html": {
                    "guard": {"enabled": "yes", "x": 1, "delivery": "cdn"},
                    "csp": {
                        "mode": "block",
                        "sample": 1.5,
                        "directives": ["script-src"],
                        "vendors": ["nope"],
                        "report_rate": 0,
                        "gap_hosts": 0,
                        "max_report_size": "lots",
                    },
                }
            }
        )
    problems = "\n".join(exc.value.problems)
    for path in (
        "html.guard.enabled",
        "html.guard.x: unknown key",
        "html.guard.delivery: expected one of 'inline', 'external', got 'cdn'",
        "html.csp.mode",
        "html.csp.sample",
        "html.csp.directives: [0]",
        "html.csp.vendors[0]: unknown vendor id 'nope'",
        "html.csp.report_rate",
        "html.csp.gap_hosts",
        "html.csp.max_report_size",
    ):
        assert path in problems, path


def test_enforce_needs_vendors_and_a_header_that_fits() -> None:
    with pytest.raises(ConfigError, match='vendors "none" would block every third-party request'):
        parse_config({"html": {"csp": {"mode": "enforce"}}})
    with pytest.raises(ConfigError, match="html.csp.vendors: the header would be"):
        parse_config({"html": {"csp": {"vendors": "granted"}}})
    ok = parse_config(
        {"html": {"csp": {"mode": "enforce", "vendors": ["google-analytics"], "directives": ["img-src"]}}}
    )
    assert ok.html.csp.vendors == ("google-analytics",) and ok.html.csp.directives == ("img-src",)
    assert parse_config({"html": {"csp": {"mode": "off", "vendors": ["nope"]}}}).html.csp.mode == "off"


# --------------------------------------------------------------------------- reports


CSP_REPORT = {
    "csp-report": {
        "document-uri": "https://www.shop.test/p?session=1",
        "blocked-uri": "https://www.facebook.com/tr?id=1&uid=secret",
        "violated-directive": "img-src",
        "effective-directive": "img-src",
        "disposition": "report",
    }
}
REPORTS_JSON = [
    {
        "type": "csp-violation",
        "url": "https://www.shop.test/p",
        "body": {
            "documentURL": "https://www.shop.test/p",
            "blockedURL": "https://unknown-collector.test/c?x=1",
            "effectiveDirective": "connect-src",
            "disposition": "report",
        },
    },
    {"type": "deprecation", "body": {}},
    {"type": "csp-violation", "body": {"blockedURL": 3}},
]


def test_both_report_formats_are_read() -> None:
    one = parse_csp_reports(json.dumps(CSP_REPORT).encode(), "application/csp-report")
    assert one == [
        CspReport(
            "https://www.facebook.com/tr?id=1&uid=secret", "img-src", "https://www.shop.test/p?session=1", "report"
        )
    ]
    many = parse_csp_reports(json.dumps(REPORTS_JSON).encode(), "application/reports+json; charset=utf-8")
    assert [r.blocked for r in many] == ["https://unknown-collector.test/c?x=1"]
    legacy = {"csp-report": {"blocked-uri": "inline", "violated-directive": "script-src-elem 'self'"}}
    assert parse_csp_reports(json.dumps(legacy).encode(), "application/json")[0].directive == "script-src-elem"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{}", "text/plain", "unsupported content type"),
        (b"{nope", "application/csp-report", "not JSON"),
        (b"\xff\xfe", "application/csp-report", "not JSON"),
        (b"[1]", "application/csp-report", "neither"),
        (json.dumps(CSP_REPORT).encode(), "application/reports+json", "neither"),
    ],
)
def test_bad_report_bodies_say_why(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_csp_reports(body, content_type)


def test_queries_and_fragments_are_dropped() -> None:
    assert strip_query("https://a.test/p?uid=1#f") == "https://a.test/p"
    assert strip_query("https://a.test/p#f?x") == "https://a.test/p"


def _verdict(url: str, granted: str = "", **html: object) -> Verdict:
    policy = make_policy(parse_config({"html": html})) if html else make_policy(None)
    consent = read_consent(f"tg_consent={granted}" if granted else None, None)
    return classify_report(policy, consent.granted, CspReport(url, "img-src", "", "report"), "www.shop.test")


def test_reports_are_classified_with_the_gates_matcher() -> None:
    assert _verdict("https://www.facebook.com/tr?id=1") == Verdict(
        "leak", "advertising", "meta-pixel", "www.facebook.com"
    )
    assert _verdict("https://www.facebook.com/tr?id=1", "advertising").kind == "granted"
    assert _verdict("https://www.facebook.com/plugins/like.php").vendor == "facebook-social"
    assert _verdict("https://collector.unknown.test/c") == Verdict("gap", "", "", "collector.unknown.test")
    assert _verdict("https://cdn.shop.test/x.png", first_party_hosts=["shop.test"]).kind == "first_party"
    assert _verdict("https://www.shop.test/x").kind == "first_party"
    for keyword in ("inline", "eval", "data", "blob", "wasm-eval", ""):
        assert _verdict(keyword).kind == "other"
    # a WebSocket (or WebSocketStream) to a collector: its host, as for https
    assert _verdict("wss://bat.bing.com/ws?ti=1") == Verdict("leak", "advertising", "bing-uet", "bat.bing.com")
    assert _verdict("WS://bat.bing.com:8080/x").kind == "leak"
    assert _verdict("wss://live.unknown.test/socket") == Verdict("gap", "", "", "live.unknown.test")
    assert _verdict("wss://www.shop.test/live").kind == "first_party"


def test_an_operator_rule_without_a_vendor_names_itself() -> None:
    policy = make_policy(
        parse_config({"rule": [{"name": "our-pixel", "hosts": ["pixel.shop.test"], "category": "advertising"}]})
    )
    report = CspReport("https://pixel.shop.test/p.gif", "img-src", "", "report")
    assert classify_report(policy, {"essential"}, report, "www.shop.test") == Verdict(
        "leak", "advertising", "rule:our-pixel", "pixel.shop.test"
    )


def test_the_gap_listing_is_bounded_and_keeps_the_recent_hosts() -> None:
    table = GapTable(limit=2)
    report = CspReport("https://a.test/x?id=1", "connect-src", "https://www.shop.test/p?s=1", "report")
    assert table.add("a.test", report, 1.0) is True
    assert table.add("b.test", report, 2.0) is True
    assert table.add("a.test", report, 3.0) is False  # a.test is now the most recent
    table.add("c.test", report, 4.0)
    assert [g.host for g in table.listing()] == ["a.test", "c.test"] and table.evicted == 1
    row = table.listing()[0].as_json()
    assert row["count"] == 2 and row["example"] == "https://a.test/x" and row["page"] == "https://www.shop.test/p"


def test_token_bucket_spends_and_refills() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_report_sink_lists_leaks_and_gaps() -> None:
    sink = ReportSink()
    report = CspReport("https://www.facebook.com/tr?uid=1", "img-src", "https://www.shop.test/p?q", "report")
    sink.leak(Verdict("leak", "advertising", "meta-pixel", "www.facebook.com"), report, 5.0)
    sink.leak(Verdict("leak", "advertising", "meta-pixel", "www.facebook.com"), report, 6.0)
    sink.gaps.add("x.test", report, 6.0)
    listing = sink.listing()
    assert listing["leaks"] == [
        {
            "category": "advertising",
            "vendor": "meta-pixel",
            "count": 2,
            "last_seen": 6.0,
            "directive": "img-src",
            "example": "https://www.facebook.com/tr",
            "page": "https://www.shop.test/p",
        }
    ]
    assert [g["host"] for g in listing["gaps"]] == ["x.test"]
    sink.configure(1.0, 5, 10)
    assert sink.bucket.rate == 1.0 and sink.gaps.limit == 10
