"""The headers stage's `page_additions` step and the request stage's reading of the
banner's record (proxy.http.additions), table-tested without sockets: which pages get
the banner and the managed tags, in which language, open or not, with which nonce; a
stale or old-version tg_consent read as undecided (fail closed) exactly when the
banner re-opens; and nothing at all for a site whose banner is off."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.core.config import parse_config
from proxy.html.gate import Additions
from proxy.http.stages import Body, ResponsePlan, Stages
from proxy.metrics import Metrics

SALT = "0123456789abcdef-salt"
BANNER = {"enabled": True, "proof_salt": SALT, "policy_version": 3, "lifetime_days": 30}
GA = {"id": "ga", "kind": "script", "category": "analytics", "src": "https://www.googletagmanager.com/gtag/js?id=G-1"}
INIT = {"id": "init", "kind": "inline", "category": "analytics", "code": "gtag(1)", "placement": "head-end"}
CHAT = {"id": "chat", "kind": "script", "category": "functional", "src": "/chat.js"}
ALL = "functional.analytics.advertising.social"


def make_stages(**sections: Any) -> Stages:
    return Stages(parse_config(sections), Metrics())


def record(granted: str = ALL, version: int = 3, age_days: float = 1.0, cid: str = "Abcdefghij0123456789_-") -> str:
    return f"tg_consent={granted}~{version}~{int(time.time() - age_days * 86400)}~{cid}"


def plan(
    stages: Stages,
    cookie: str | None = None,
    *,
    content_type: str = "text/html; charset=utf-8",
    path: str = "/",
    status: int = 200,
    gpc: str | None = None,
    request: dict[str, str] | None = None,
    csp: str | None = "script-src 'nonce-PaGe+n0nce/='",
    etag: str | None = None,
    coding: str | None = None,
) -> tuple[ResponsePlan, CIMultiDict[str]]:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": content_type})
    if coding:
        headers["Content-Encoding"] = coding
    if csp:
        headers["Content-Security-Policy"] = csp
    if etag:
        headers["ETag"] = etag
    visitor = stages.visitor((cookie,) if cookie else (), gpc)
    result = stages.plan_response(
        method="GET",
        status=status,
        path=path,
        headers=headers,
        visitor=visitor,
        client_accept_encoding=None,
        host="shop.example",
        secure=True,
        conditional_ours=False,
        request_headers=CIMultiDict(request or {}),
    )
    return result, headers


def banner_blob(result: ResponsePlan, page_lang: str | None = None) -> dict[str, Any]:
    localised = result.additions.localised
    assert localised is not None, "no banner on this page"
    markup = localised(page_lang)
    m = re.fullmatch(r'<script type="application/json" id="tag-gate-banner-config">(.*)</script>(<script .*)', markup)
    assert m is not None, markup
    data: dict[str, Any] = json.loads(m.group(1))
    data["_script"] = m.group(2)
    return data


# --------------------------------------------------------------------------- banner off: nothing changes


def has_banner_or_tags(additions: Additions) -> bool:
    """Whether the banner or a [[tag]] is among the additions (the runtime guard, added at
    the head's start for a visitor who refuses something, is issue 14's and not checked)."""
    return bool(additions.body_end or additions.head_end or additions.localised or additions.activation)


@pytest.mark.parametrize("cookie", [None, "tg_consent=analytics", f"tg_consent={ALL}", "_ga=1; tg_consent="])
@pytest.mark.parametrize("etag", [None, '"abc"'])
def test_banner_off_and_no_tags_change_nothing(cookie: str | None, etag: str | None) -> None:
    today = make_stages()
    off = make_stages(banner={"enabled": False, "policy_version": 7, "position": "none"})
    a, a_headers = plan(today, cookie, etag=etag)
    b, b_headers = plan(off, cookie, etag=etag)
    assert b.additions == a.additions and not has_banner_or_tags(a.additions)
    assert (b.body, b.nonce, b.decode, b.encode, b.keep_length) == (a.body, a.nonce, a.decode, a.encode, a.keep_length)
    assert list(b_headers.items()) == list(a_headers.items())
    assert today.visitor((cookie,) if cookie else (), None) == off.visitor((cookie,) if cookie else (), None)


# --------------------------------------------------------------------------- the banner


def test_first_visit_gets_an_open_banner_with_the_page_nonce() -> None:
    stages = make_stages(banner=BANNER)
    result, headers = plan(stages)
    assert result.body is Body.GATE
    blob = banner_blob(result)
    assert blob["open"] is True and blob["policy_version"] == 3 and blob["lang"] == "en"
    assert blob["_script"] == '<script src="/__tag-gate/banner.js" async nonce="PaGe+n0nce/="></script>'
    assert "Accept-Language" in headers["Vary"] and "Cookie" in headers["Vary"]
    assert headers["Cache-Control"].startswith("private")
    assert result.additions.head_end == result.additions.body_end == ""


def test_a_current_choice_gets_a_closed_banner_even_when_everything_is_granted() -> None:
    stages = make_stages(banner=BANNER)
    result, _ = plan(stages, record())
    assert result.body is Body.GATE, "the preferences button needs the page to go through the gate"
    assert banner_blob(result)["open"] is False
    visitor = stages.visitor((record(),), None)
    assert visitor.consent.granted == frozenset({"essential", "functional", "analytics", "advertising", "social"})


@pytest.mark.parametrize(
    ("cookie", "why"),
    [
        (record(version=2), "an older policy version"),
        (record(age_days=31), "older than lifetime_days"),
        (record(age_days=-2), "dated in the future"),
        (f"tg_consent={ALL}", "no record (written by hand or an old banner)"),
        (f"tg_consent={ALL}~3~x~id", "a malformed record"),
        (f"{record()}; {record(granted='analytics')}", "two different values"),
    ],
)
def test_a_stale_choice_reopens_the_banner_and_is_read_as_undecided(cookie: str, why: str) -> None:
    stages = make_stages(banner=BANNER, consent={"undecided": ["functional"]})
    visitor = stages.visitor(tuple(cookie.split("; ")) if "; " in cookie else (cookie,), None)
    assert visitor.banner_open, why
    assert visitor.consent.granted == frozenset({"essential", "functional"}), why
    assert not visitor.consent.decided
    result, _ = plan(stages, cookie if "; " not in cookie else None)
    if "; " not in cookie:
        assert banner_blob(result)["open"] is True


def test_the_stale_choice_is_not_read_as_undecided_when_the_banner_is_off() -> None:
    stages = make_stages()
    visitor = stages.visitor((record(version=2),), None)
    assert "analytics" in visitor.consent.granted and not visitor.banner_open


def test_another_consent_manager_still_decides() -> None:
    """A site with the banner on and another CMP's cookie: the stale native record is
    ignored, the other source decides."""
    stages = make_stages(banner=BANNER, consent={"sources": ["tag-gate", "cookiebot"]})
    cookiebot = "CookieConsent={stamp:%27x%27%2Cnecessary:true%2Cpreferences:false%2Cstatistics:true%2Cmarketing:false}"
    visitor = stages.visitor((f"{record(version=1)}; {cookiebot}",), None)
    assert visitor.banner_open and visitor.consent.source == "cookiebot"
    assert visitor.consent.granted == frozenset({"essential", "analytics"})


def test_a_choice_expires_while_its_visitor_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    stages = make_stages(banner=BANNER)
    cookie = record(age_days=29)
    assert not stages.visitor((cookie,), None).banner_open
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    visitor = stages.visitor((cookie,), None)
    assert visitor.banner_open and visitor.consent.granted == frozenset({"essential"})


@pytest.mark.parametrize(
    ("page_lang", "accept", "expected"),
    [("fr-CA", "de", "fr"), (None, "de-AT,de;q=0.9", "de"), ("pl", "pl, nl;q=0.5", "nl"), (None, None, "en")],
)
def test_language_from_the_page_then_accept_language(page_lang: str | None, accept: str | None, expected: str) -> None:
    result, _ = plan(make_stages(banner=BANNER), request={"Accept-Language": accept} if accept else {})
    assert banner_blob(result, page_lang)["lang"] == expected


def test_a_fixed_language_does_not_vary() -> None:
    result, headers = plan(make_stages(banner={**BANNER, "language": "it"}), request={"Accept-Language": "de"})
    assert banner_blob(result, "fr")["lang"] == "it" and "Accept-Language" not in headers["Vary"]


def test_no_nonce_without_one_in_the_csp() -> None:
    result, _ = plan(make_stages(banner=BANNER), csp=None)
    assert banner_blob(result)["_script"] == '<script src="/__tag-gate/banner.js" async></script>'


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"content_type": "application/json"}, "not HTML"),
        ({"status": 304}, "no body"),
        ({"path": "/admin/users"}, "an [[exception]] page"),
        ({"request": {"Sec-Fetch-Dest": "iframe"}}, "a page inside a frame"),
    ],
)
def test_pages_without_the_banner(kw: dict[str, Any], why: str) -> None:
    stages = make_stages(banner=BANNER, exception=[{"path_prefix": "/admin/"}])
    result, _ = plan(stages, **kw)
    assert not has_banner_or_tags(result.additions), why


def test_the_etag_names_an_open_banner() -> None:
    stages = make_stages(banner=BANNER)
    _, undecided = plan(stages, etag='"v1"')
    _, decided = plan(stages, record(granted=""), etag='"v1"')
    assert undecided["ETag"] == 'W/"v1-tgf0a0d0s0g0r"' and decided["ETag"] == 'W/"v1-tgf0a0d0s0g0"'
    # The browser revalidating the open-banner page after deciding gets a fresh page.
    out: CIMultiDict[str] = CIMultiDict({"If-None-Match": undecided["ETag"]})
    stages.forward_request_headers(out, stages.visitor((record(granted=""),), None))
    assert "If-None-Match" not in out


# --------------------------------------------------------------------------- managed tags


def test_tags_in_order_with_the_nonce_live_or_inert() -> None:
    stages = make_stages(tag=[INIT, GA, CHAT])
    result, _ = plan(stages, "tg_consent=functional")
    adds = result.additions
    assert adds.localised is None, "no banner: tags only"
    assert adds.head_end == (
        '<script data-tg-tag="init" nonce="PaGe+n0nce/=" data-tg-category="analytics" type="text/plain">'
        "gtag(1)</script>"
    )
    assert adds.body_end == (
        '<script data-tg-tag="ga" async nonce="PaGe+n0nce/=" data-tg-category="analytics" type="text/plain" '
        'data-tg-src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
        '<script data-tg-tag="chat" src="/chat.js" async nonce="PaGe+n0nce/="></script>'
    )
    assert adds.activation
    granted, _ = plan(stages, f"tg_consent={ALL}")
    assert granted.body is Body.GATE and not granted.additions.activation
    assert 'src="https://www.googletagmanager.com/gtag/js?id=G-1" async' in granted.additions.body_end


def test_banner_then_tags_and_tags_in_frames() -> None:
    stages = make_stages(banner=BANNER, tag=[GA])
    result, _ = plan(stages, request={"Sec-Fetch-Dest": "iframe"})
    assert result.additions.localised is None and 'data-tg-tag="ga"' in result.additions.body_end
    result, _ = plan(stages)
    assert result.additions.localised is not None and result.additions.body_end.startswith('<script data-tg-tag="ga"')


def test_tags_refused_by_gpc_are_left_out() -> None:
    stages = make_stages(tag=[{**GA, "category": "advertising"}, CHAT])
    result, _ = plan(stages, gpc="1")
    assert 'data-tg-tag="ga"' not in result.additions.body_end and 'data-tg-tag="chat"' in result.additions.body_end


def test_an_unreadable_page_of_a_visitor_who_refuses_nothing_passes_unchanged() -> None:
    """Additions alone never turn a page the gate cannot read into a fail-safe one."""
    stages = make_stages(banner=BANNER)
    result, headers = plan(stages, record(), coding="compress")
    assert result.body is Body.PASS and headers.getall("Content-Security-Policy") == ["script-src 'nonce-PaGe+n0nce/='"]
    refusing, _ = plan(stages, record(granted=""), coding="compress")
    assert refusing.body is Body.FAIL_SAFE
