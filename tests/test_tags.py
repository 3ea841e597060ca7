"""The tag manager's `[[tag]]` entries (proxy.core.tags): validation with TOML paths,
check-config, and the markup written for each consent (live, inert, left out), in order,
with the nonce. Insertion into pages: tests/test_page_additions.py; in a browser:
tests/e2e/test_banner.py."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.core.config import ConfigError, parse_config
from proxy.core.defer import make_cmp_names
from proxy.core.tags import Tag, TagPlan

GA = {"id": "ga", "kind": "script", "category": "analytics", "src": "https://www.googletagmanager.com/gtag/js?id=G-1"}
GA_INIT = {"id": "ga-init", "kind": "inline", "category": "analytics", "code": "gtag('config','G-1');"}
PIXEL = {"id": "li", "kind": "pixel", "category": "advertising", "src": "https://px.ads.linkedin.com/collect/?pid=1"}
VIDEO = {
    "id": "video",
    "kind": "iframe",
    "category": "social",
    "src": "https://www.youtube.com/embed/abc",
    "title": "Our shop",
    "width": 560,
    "height": "315",
}
CHAT = {"id": "chat", "kind": "script", "category": "functional", "src": "/js/chat.js", "loading": "defer"}


def tags(*entries: dict[str, Any], **sections: Any) -> tuple[Tag, ...]:
    return parse_config({"tag": list(entries), **sections}).tags


def problems(*entries: Any, **sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"tag": list(entries), **sections})
    return info.value.problems


def test_a_full_entry() -> None:
    (video,) = tags({**VIDEO, "paths": ["/product/", "/shop/"], "attributes": {"allowfullscreen": True, "id": "v"}})
    assert video == Tag(
        id="video",
        kind="iframe",
        category="social",
        placement="body-end",
        paths=("/product/", "/shop/"),
        src="https://www.youtube.com/embed/abc",
        title="Our shop",
        width="560",
        height="315",
        attributes=(("allowfullscreen", ""), ("id", "v")),
    )
    assert video.applies_to("/shop/pots") and not video.applies_to("/about")
    assert tags({**GA, "paths": "/blog/"})[0].paths == ("/blog/",)
    assert tags({**GA, "enabled": False}) == ()


BAD: list[tuple[dict[str, Any], str]] = [
    ({k: v for k, v in GA.items() if k != "id"}, "tag[0].id: required"),
    ({**GA, "id": "Google Analytics"}, "tag[0].id: 'Google Analytics': use a-z"),
    ({k: v for k, v in GA.items() if k != "kind"}, "tag[0].kind: required"),
    ({**GA, "kind": "img"}, "tag[0].kind: expected one of 'script', 'inline', 'pixel', 'iframe'"),
    ({**GA, "category": "tracking"}, "tag[0].category: expected one of 'advertising', 'analytics'"),
    ({k: v for k, v in GA.items() if k != "category"}, "tag[0].category: required"),
    ({**GA, "src": "javascript:alert(1)"}, "tag[0].src: expected an http(s) URL or a path on the site"),
    ({**GA, "src": "https://x.example/a b"}, "tag[0].src: expected an http(s) URL"),
    ({**GA, "src": '/a.js" onload="x'}, "tag[0].src: expected an http(s) URL"),
    ({**GA, "src": "//cdn.example/a.js"}, "tag[0].src: expected an http(s) URL"),
    ({**GA, "src": "https://exämple.com/a.js"}, "tag[0].src: 'https://exämple.com/a.js': percent-encode"),
    ({k: v for k, v in GA.items() if k != "src"}, "tag[0].src: required for a script"),
    ({**GA, "code": "x()"}, "tag[0].code: a script has src, not code"),
    ({**GA_INIT, "src": "/a.js"}, "tag[0].src: an inline tag has code, not src"),
    ({k: v for k, v in GA_INIT.items() if k != "code"}, "tag[0].code: required for an inline tag"),
    ({**GA_INIT, "code": "document.write('</script>')"}, 'tag[0].code: contains "</script" or "<!--"'),
    ({**GA_INIT, "code": "x('é')"}, "tag[0].code: contains 'é': write characters outside ASCII as \\u escapes"),
    ({**GA_INIT, "code": "  "}, "tag[0].code: must not be empty"),
    ({**GA, "placement": "head"}, "tag[0].placement: expected one of 'head-end', 'body-end'"),
    ({**PIXEL, "placement": "head-end"}, 'tag[0].placement: a pixel is page content: it goes at the "body-end"'),
    ({**GA, "paths": ["shop/"]}, "tag[0].paths: [0] 'shop/': a path prefix starts with /"),
    ({**GA, "paths": []}, "tag[0].paths: expected a path prefix or a non-empty array"),
    ({**GA, "loading": "lazy"}, "tag[0].loading: expected one of 'async', 'defer', 'blocking'"),
    ({**PIXEL, "loading": "async"}, 'tag[0].loading: only for kind = "script"'),
    ({**VIDEO, "title": ""}, "tag[0].title: required for an iframe"),
    ({**VIDEO, "width": "wide"}, "tag[0].width: expected a number of pixels or a percentage"),
    ({**GA, "width": 1}, "tag[0]: width, height and title are for pixels and iframes"),
    ({**GA, "attributes": {"onload": "steal()"}}, "tag[0].attributes: 'onload': only data-*, aria-*"),
    ({**GA, "attributes": {"src": "/x.js"}}, "tag[0].attributes: 'src': only data-*"),
    ({**GA, "attributes": {"data-x": 3}}, "tag[0].attributes: data-x: expected a one-line string"),
    ({**GA, "colour": "red"}, "tag[0].colour: unknown key"),
]


@pytest.mark.parametrize(("entry", "message"), BAD, ids=[m.split(":")[1].strip() for _, m in BAD])
def test_problems_name_their_toml_path(entry: dict[str, Any], message: str) -> None:
    found = problems(entry)
    assert any(p.startswith(message) for p in found), found


def test_problems_of_several_entries_at_once() -> None:
    found = problems(GA, {**GA}, {**PIXEL, "category": "nope"}, "not a table")
    assert [p.split(":")[0] for p in found] == ["tag[1].id", "tag[2].category", "tag[3]"], found
    assert "'ga' is already the id of another tag" in found[0]
    assert problems(tag="x") == ["tag: expected an array of tables ([[tag]]), got a string"]


def test_custom_categories_are_known() -> None:
    (tag,) = tags({**GA, "category": "chat"}, categories={"chat": "Live chat"})
    assert tag.category == "chat"


def test_report_only_mode_refuses_tags_and_the_banner() -> None:
    found = problems(GA, server={"mode": "report-only"})
    assert found == [
        "tag: report-only mode changes no page, so the [[tag]] entries would never reach one; "
        'use server.mode = "enforce"'
    ]
    found = problems(server={"mode": "report-only"}, banner={"enabled": True, "proof_sink": "off"})
    assert found[0].startswith("banner.enabled: report-only mode changes no page")
    found = problems(banner={"enabled": True, "proof_sink": "off"}, consent={"sources": ["onetrust"]})
    assert found == ['banner.enabled: the banner writes tg_consent: consent.sources must list "tag-gate"']


def test_check_config_reports_tags_with_their_path(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[[tag]]\nid = "ga"\nkind = "script"\ncategory = "analytics"\nsrc = "https://ok.example/a.js"\n\n'
        '[[tag]]\nid = "bad"\nkind = "iframe"\ncategory = "ads"\nsrc = "ftp://x"\n',
        encoding="utf-8",
    )
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["check-config", str(cfg)])
    lines = out.getvalue().splitlines()
    assert status == 1
    assert lines == [
        f"{cfg}: tag[1].category: expected one of 'advertising', 'analytics', 'essential', 'functional', "
        "'social', got 'ads'",
        f"{cfg}: tag[1].src: expected an http(s) URL or a path on the site (/js/app.js), got 'ftp://x'",
        f"{cfg}: tag[1].title: required for an iframe: what it shows (screen readers announce it)",
        "3 problems found",
    ]


# --------------------------------------------------------------------------- markup

ALL = (GA_INIT | {"placement": "head-end"}, GA | {"placement": "head-end"}, CHAT, PIXEL, VIDEO)


def plan(*entries: dict[str, Any], style: str = "tag-gate") -> TagPlan:
    config = parse_config({"tag": list(entries or ALL)})
    return TagPlan(config.tags, style, make_cmp_names(config.consent))


def granted(*names: str) -> Any:
    return lambda category: category == "essential" or category in names


def test_granted_tags_are_live_in_order_with_the_nonce() -> None:
    out = plan().render("/", granted("functional", "analytics", "advertising", "social"), (), "n0nce+/=")
    assert out.head_end == (
        "<script data-tg-tag=\"ga-init\" nonce=\"n0nce+/=\">gtag('config','G-1');</script>"
        '<script data-tg-tag="ga" src="https://www.googletagmanager.com/gtag/js?id=G-1" async nonce="n0nce+/=">'
        "</script>"
    )
    assert out.body_end == (
        '<script data-tg-tag="chat" src="/js/chat.js" defer nonce="n0nce+/="></script>'
        '<img data-tg-tag="li" src="https://px.ads.linkedin.com/collect/?pid=1" alt width="1" height="1" hidden>'
        '<iframe data-tg-tag="video" src="https://www.youtube.com/embed/abc" title="Our shop" width="560" '
        'height="315"></iframe>'
    )
    assert not out.deferred


def test_refused_tags_are_inert_and_fetch_nothing() -> None:
    out = plan().render("/", granted("functional"), (), "abc")
    assert out.head_end == (
        '<script data-tg-tag="ga-init" nonce="abc" data-tg-category="analytics" type="text/plain">'
        "gtag('config','G-1');</script>"
        '<script data-tg-tag="ga" async nonce="abc" data-tg-category="analytics" type="text/plain" '
        'data-tg-src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
    )
    assert out.body_end.startswith('<script data-tg-tag="chat" src="/js/chat.js" defer nonce="abc"></script>')
    assert ' src="' not in out.body_end.split("</script>", 1)[1], "no refused element keeps a fetching src"
    assert '<img data-tg-tag="li" alt width="1" height="1" hidden data-tg-category="advertising" ' in out.body_end
    assert out.deferred, "native deferral: the page needs activate.js"


def test_gpc_refused_categories_are_left_out() -> None:
    out = plan().render("/", granted("functional"), frozenset({"advertising"}), None)
    assert 'data-tg-tag="li"' not in out.body_end and 'data-tg-tag="video"' in out.body_end
    assert "nonce" not in out.head_end + out.body_end, "no nonce on a page without one"


def test_paths_choose_the_pages() -> None:
    p = plan({**GA, "paths": ["/shop/"]}, {**CHAT, "paths": ["/", "/help"]})
    assert 'data-tg-tag="ga"' in p.render("/shop/a", granted("analytics"), (), None).body_end
    assert 'data-tg-tag="ga"' not in p.render("/about", granted("analytics"), (), None).body_end
    assert p.render("/about", granted(), frozenset({"functional"}), None).body_end == ""
    assert not plan({**GA, "enabled": False})


def test_other_deferral_styles() -> None:
    out = plan(GA, VIDEO, style="cookiebot").render("/", granted(), (), None)
    assert 'type="text/plain" data-cookieconsent="statistics"' in out.body_end
    assert 'data-cookieblock-src="https://www.youtube.com/embed/abc"' in out.body_end
    assert not out.deferred, "the site's consent manager activates them, not activate.js"


def test_markup_is_ascii_and_escaped() -> None:
    out = plan({**VIDEO, "title": 'Vidéo "maison" <b>', "attributes": {"data-note": "a&b"}}).render(
        "/", granted("social"), (), 'x"y'
    )
    assert out.body_end.isascii()
    assert 'title="Vid&#233;o &quot;maison&quot; <b>"' in out.body_end and 'data-note="a&amp;b"' in out.body_end
