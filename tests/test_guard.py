"""guard: the runtime guard's rule table, its regex translation and the code compaction
(pure; the browser half of the shared table is tests/e2e/test_guard.py)."""

from __future__ import annotations

import gzip
import json
import re
from importlib import resources
from typing import Any

import pytest

from proxy.core.catalog import Catalog, Vendor, make_catalog
from proxy.core.config import make_policy, parse_config
from proxy.core.consent import read_consent
from proxy.core.policy import Kind, Policy
from proxy.html.guard import (
    GuardRules,
    compact_js,
    decode_table,
    guard_sizes,
    js_tokens,
    load_guard_code,
    make_guard,
    make_guard_rules,
    minify_js,
    translate_regex,
)
from proxy.html.guard_code import split_guard_code
from proxy.html.selection import SELECTORS
from proxy.http.stages import Stages
from proxy.metrics import Metrics
from tests.guard_table import Row, consent, policy, rows

GUARD_JS = (resources.files("proxy") / "data" / "public" / "guard.js").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the shared table


@pytest.mark.parametrize("row", rows(), ids=lambda r: r.id)
def test_server_side_decision_matches_the_shared_table(row: Row) -> None:
    decision = policy(row.policy).decide_url(consent(row.granted), Kind.SCRIPT, row.url, row.page)
    blocked = not decision.keeps
    assert blocked == row.blocked, row.note
    if row.blocked:
        assert (decision.vendor.id if decision.vendor else None) == row.vendor


def test_the_table_covers_what_it_promises() -> None:
    notes = " ".join(r.note for r in rows())
    urls = " ".join(r.url for r in rows())
    for needle in (
        "trailing dot",
        "userinfo",
        "punycode",
        "IDN",
        "segment-wise",
        "case-sensitive",
        "IP address",
        "packed",
    ):
        assert needle in notes
    for needle in ("\\", ":8443", "//connect", "/./", "%2e"):
        assert needle in urls
    assert {r.policy for r in rows()} == {"default", "site", "unknown-gated"}
    assert sum(r.blocked for r in rows()) >= 40 and sum(not r.blocked for r in rows()) >= 40


# --------------------------------------------------------------------------- the table


def _table(p: Policy, granted: str, page: str = "www.shop.test", **kw: Any) -> dict[str, Any]:
    text = make_guard(p, **kw).rules_json(read_consent(f"tg_consent={granted}" if granted else None, None), page)
    data: dict[str, Any] = json.loads(text)
    return data


def _vendors(table: dict[str, Any]) -> dict[str, list[Any]]:
    """The indexed table's vendors as `[id, category, [host suffix], ["host/path"]]`."""
    vendors, hosts = decode_table(table)
    rows: list[list[Any]] = [[v[0], v[1], [], []] for v in vendors]
    for host, i in hosts.items():
        rows[i][2].append(host)
    for host, entries in table["urls"].items():
        for path, i, *_ in entries:
            rows[i][3].append(host + path)
    return {r[0]: r for r in rows}


def test_table_holds_refused_vendors_only_and_their_shadows() -> None:
    p = make_policy(None)
    none = _vendors(_table(p, ""))
    assert "meta-pixel" in none and "google-tag-manager" in none
    assert all(v[1] != "essential" for v in none.values())
    analytics = _vendors(_table(p, "analytics"))
    assert "google-tag-manager" not in analytics and "meta-pixel" in analytics
    # social refused, advertising granted: the pixel's URL prefix on facebook.com is in the
    # table (as an allow entry) because it wins over the refused facebook.com host.
    ads = _vendors(_table(p, "advertising.analytics"))
    assert ads["meta-pixel"] == ["meta-pixel", "advertising", [], ["facebook.com/tr"]]
    assert "facebook.com" in ads["facebook-social"][2]
    everything = _table(p, "functional.analytics.advertising.social")
    assert everything["vendors"] == []


def test_table_fields() -> None:
    p = make_policy(parse_config({"html": {"first_party_hosts": ["cdn.shop.test"], "unknown_hosts": "advertising"}}))
    t = _table(p, "analytics", cookie_name="consent_x", gpc_refuses=("advertising",))
    assert t["v"] == 3 and t["cookie"] == "consent_x" and t["style"] == "tag-gate"
    assert t["granted"] == {"analytics": 1, "essential": 1} and t["final"] == {}
    assert t["firstParty"] == {"cdn.shop.test": 1} and t["unknown"] == "advertising" and t["page"] == "www.shop.test"
    # Unknown hosts refused: every vendor must be known to the guard, granted or not.
    assert "google-tag-manager" in _vendors(t)
    gpc = json.loads(make_guard(p).rules_json(read_consent("tg_consent=advertising", "1"), "x"))
    assert gpc["final"] == {"advertising": 1}


def test_rules_are_kept_in_order_with_their_outcome() -> None:
    p = policy("site")
    t = _table(p, "")
    assert [r[4] for r in t["rules"]] == [
        0,
        "social",
        "analytics",
        "advertising",
        1,
        "advertising",
        "advertising",
        "analytics",
    ]
    own = t["rules"][2]
    assert own == [0, ["/js/tracking/"], 0, 0, "analytics"]
    # A vendor named by a rule is in the table even when granted: the rule needs to know it.
    assert "google-tag-manager" in _vendors(_table(p, "analytics"))


def test_the_table_is_indexed_as_the_lookup_reads_it() -> None:
    p = make_policy(
        parse_config(
            {
                "vendor": [
                    {"id": "q", "name": "Q", "category": "advertising", "urls": ["t.test/a", "t.test/a/b"]},
                    {"id": "r", "name": "R", "category": "analytics", "hosts": ["t.test"], "urls": ["t.test/a"]},
                ]
            }
        )
    )
    t = _table(p, "")
    vendors, hosts = decode_table(t)
    ids = [v[0] for v in vendors]
    assert hosts["t.test"] == ids.index("r")
    # the longest prefix first; a later vendor wins an equal host + path, as in the catalogue
    assert t["urls"]["t.test"] == [["/a/b", ids.index("q")], ["/a", ids.index("r")]]
    assert next(r for r in make_guard(p).vendor_rows(read_consent(None, None)) if r[0] == "q") == [
        "q",
        "advertising",
        [],
        ["t.test/a/b"],
    ]


@pytest.mark.parametrize("name", ["builtin", "default", "site", "unknown-gated"])
@pytest.mark.parametrize("granted", ["", "analytics", "advertising.analytics", "functional.analytics.social"])
def test_packed_vendors_read_back_as_the_rows(name: str, granted: str) -> None:
    """Version 3 packs vendors into strings (ids derived from hosts, `~` for `.com`):
    reading them back as guard.js does gives every row's id, category and hosts, and the
    URL entries point at the right vendor."""
    p = make_policy(None) if name == "builtin" else policy(name)
    state = read_consent(f"tg_consent={granted}" if granted else None, None)
    guard = make_guard(p)
    rows = guard.vendor_rows(state)
    t = json.loads(guard.rules_json(state, "www.shop.test"))
    decoded = _vendors(t)
    assert len(decoded) == len(rows) == len(decode_table(t)[0])
    for vendor_id, category, hosts, urls in rows:
        assert decoded[vendor_id][1] == category
        assert sorted(decoded[vendor_id][2]) == sorted(hosts)
        assert sorted(decoded[vendor_id][3]) == sorted(u.partition("?")[0] for u in urls)
    assert "~" in json.dumps(t["vendors"]) or name != "builtin"


def test_packed_vendor_ids_are_derived_only_where_they_read_back() -> None:
    p = make_policy(
        parse_config(
            {
                "vendor": [
                    {"id": "acme", "name": "A", "category": "advertising", "hosts": ["cdn.other.net", "acme.com"]},
                    {"id": "com", "name": "B", "category": "advertising", "hosts": ["x.com.au"]},
                    {"id": "solo", "name": "C", "category": "advertising", "urls": ["t.test/p"]},
                    {"id": "tld", "name": "D", "category": "social", "hosts": ["tld.example.org"]},
                ]
            }
        )
    )
    t = _table(p, "")
    packed = dict(t["vendors"])
    words = packed["advertising"].split(" ")
    assert "acme~,cdn.other.net" in words and "x.com.au" in words and "solo" in words
    assert "tld,tld.example.org" in packed["social"].split(" ")
    v = _vendors(t)
    assert v["com"][2] == ["x.com.au"] and v["solo"][3] == ["t.test/p"] and v["tld"][2] == ["tld.example.org"]
    assert sorted(v["acme"][2]) == ["acme.com", "cdn.other.net"]


def test_json_is_safe_inside_a_script_element() -> None:
    p = make_policy(None)
    text = make_guard(p).rules_json(read_consent(None, None), "</script><script>alert(1)</script>")
    assert "<" not in text and ">" not in text
    assert json.loads(text)["page"] == "</script><script>alert(1)</script>"


def test_tables_are_memoised_per_consent_key_and_policy() -> None:
    p = make_policy(None)
    assert make_guard(p) is make_guard(p)
    guard = make_guard(p)
    a = guard._cached(read_consent("tg_consent=analytics", None))
    b = guard._cached(read_consent("tg_consent=analytics", None))
    assert a is b
    assert make_guard(make_policy(None)) is not guard
    assert make_guard(p, cookie_name="other") is not guard
    assert make_guard_rules(p, read_consent(None, None), "h") == guard.rules_json(read_consent(None, None), "h")


def test_later_vendors_win_hosts_and_urls_as_in_the_catalogue() -> None:
    extra = [
        Vendor(id="mine", name="Mine", category="functional", hosts=("connect.facebook.net",)),
        Vendor(id="mine2", name="Mine2", category="analytics", urls=("www.google.com/recaptcha/",)),
    ]
    p = Policy(make_catalog(extra))
    t = _vendors(_table(p, ""))
    assert t["mine"][2] == ["connect.facebook.net"] and "connect.facebook.net" not in t["meta-pixel"][2]
    assert t["mine2"][3] == ["www.google.com/recaptcha/"]


def test_every_catalogue_entry_resolves_to_its_effective_vendor() -> None:
    """The builder's reading of the catalogue agrees with `Catalog` for every entry."""
    catalog = make_catalog()
    guard = GuardRules(Policy(catalog))
    for e in guard._entries:
        url = f"https://{e.text}" if e.path is not None else f"https://{e.suffix}/"
        found = catalog.vendor_for_location(e.suffix, url)
        assert found is not None and found.id == e.vendor.id, e.text


def test_path_prefixes_are_encoded_as_the_browser_writes_paths() -> None:
    p = make_policy(parse_config({"rule": [{"path_prefix": "/café/a b", "category": "analytics"}]}))
    assert _table(p, "")["rules"][0][1] == ["/caf%C3%A9/a%20b"]


def test_table_weight_for_the_full_catalogue() -> None:
    """Not a budget check: prints what a full catalogue's refused rules weigh."""
    p = make_policy(None)
    for granted in ("", "analytics", "analytics.social"):
        text = make_guard(p).rules_json(read_consent(f"tg_consent={granted}" if granted else None, None), "w.x")
        print(
            f"rules for consent {granted or 'none'!r}: {len(text)} bytes, {len(gzip.compress(text.encode(), 9))} gzip"
        )


# --------------------------------------------------------------------------- url_regex


REGEXES: list[tuple[str, list[str]]] = [
    (
        r"^https?://[^/]*\.cdn-ads\.test/",
        ["https://a.cdn-ads.test/x", "http://cdn-ads.test/x", "ftp://a.cdn-ads.test/"],
    ),
    (
        r"(?i)/PIXEL\.gif(?:$|\?)",
        ["https://x/pixel.GIF", "https://x/pixel.gif?a", "https://x/pixel.gifs", "https://x/PIXEL.gif\n"],
    ),
    (
        r"track(ing)?\b",
        ["https://x/tracking-1", "https://x/trackinger", "https://x/track_é", "https://x/trackéé", "track"],
    ),
    (r"\d{3,}", ["https://x/12", "https://x/123", "https://x/١٢٣", "https://x/a1b2c3"]),
    (r"\w+@\w+", ["https://a@b/", "https://é@ß/", "https://-@-/"]),
    (r"a.c", ["abc", "a\nc", "a\u2028c", "a\rc"]),
    (r"(?s)a.c", ["a\nc", "abc"]),
    (r"end$", ["x/end", "x/end\n", "x/end\n\n", "x/ends"]),
    (r"(?m)^b", ["a\nb", "a\rb", "ab"]),
    (r"\Aa|z\Z", ["az", "ba", "a", "z\n"]),
    (r"[\s]x|\sy", ["a\u3000x", "a\x1cy", "a\u200by", "a x"]),
    (r"(?P<h>ab)(?P=h)", ["abab", "abba"]),
    (r"x{,2}y{2,}z{1}", ["yyz", "xxxyyz", "yz"]),
    (r"a{b", ["a{b", "ab"]),
    (r"[]a-]", ["]", "a", "-", "b"]),
    (r"[^\d.]+\.", ["12.x.", "..", "a."]),
    (r"\x41\u00e9\N{BULLET}\n?", ["Aé•", "Ae•"]),
    (r"(?x) a b  # comment\n c", ["abc", "a b c"]),
    (r"(?a)\w+\d", ["é1", "ab1", "١"]),
    (r"(?<=/)p(?!x)", ["/p", "/px", "p"]),
    (r"(?#note)ab+?", ["abbb", "a"]),
    (r"\.js$|\.mjs", ["a.js", "a.mjs?x", "a.jsx"]),
]


@pytest.mark.parametrize(("pattern", "samples"), REGEXES)
def test_translated_regexes_compile(pattern: str, samples: list[str]) -> None:
    source, flags = translate_regex(re.compile(pattern))
    assert "u" in flags and source


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(?i:a)b", "group"),
        (r"(?>a)", "group"),
        (r"a++", "possessive"),
        (r"(a)?(?(1)b|c)", "group"),
        (r"[\W]", "inside a character class"),
        (r"[\S_]", "inside a character class"),
    ],
)
def test_untranslatable_regexes_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        translate_regex(re.compile(pattern))


def test_untranslatable_rule_is_reported_and_skipped() -> None:
    p = make_policy(
        parse_config(
            {"rule": [{"url_regex": "(?>ads)", "category": "advertising"}, {"hosts": ["x.test"], "allow": True}]}
        )
    )
    guard = make_guard(p)
    assert len(guard.warnings) == 1 and "rule[0]" in guard.warnings[0] and "skips this rule" in guard.warnings[0]
    assert _table(p, "")["rules"] == [[{"x.test": 1}, 0, 0, 0, 0]]


def test_case_insensitive_rule_says_what_differs() -> None:
    p = make_policy(parse_config({"rule": [{"url_regex": "(?i)/pixel", "category": "advertising"}]}))
    assert any("U+0130" in w for w in make_guard(p).warnings)


def test_python_whitespace_set_is_what_str_isspace_says() -> None:
    from proxy.html.jsregex import _PY_SPACE

    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == _PY_SPACE


# --------------------------------------------------------------------------- compaction


def test_compaction_keeps_every_token() -> None:
    code = compact_js(GUARD_JS)
    assert js_tokens(code) == js_tokens(GUARD_JS)
    assert "/*" not in code and "\n\n" not in code and "  " not in code


@pytest.mark.parametrize(
    ("source", "compact"),
    [
        ("a = b / c / d;", "a=b/c/d;"),
        ("x = /a\\/b[/]c/g.test(s); // note", "x=/a\\/b[/]c/g.test(s);"),
        ("return /x/.test(y)", "return/x/.test(y)"),
        ("a + +b; c - -d; e - - f", "a+ +b;c- -d;e- -f"),
        ("s = 'a // b /* c */'; t = \"it's\";", "s='a // b /* c */';t=\"it's\";"),
        ("u = `a ${ b /* c */ + `d ${e}` } f`; // x", "u=`a ${b+`d ${e}`} f`;"),
        ("let x = a\n++b", "let x=a\n++b"),
        ("f(x) / 2", "f(x)/2"),
        ("a[0] / b", "a[0]/b"),
        ("if (a) /* c */ b();", "if(a)b();"),
    ],
)
def test_compaction_cases(source: str, compact: str) -> None:
    assert compact_js(source) == compact


@pytest.mark.parametrize("bad", ["'abc", "/* open", "`abc", "x = /abc"])
def test_compaction_refuses_what_it_cannot_read(bad: str) -> None:
    with pytest.raises(ValueError):
        compact_js(bad)


@pytest.mark.parametrize(
    ("source", "minified"),
    [
        # declared names shrink; globals, properties and strings stay
        ("const longName = 1, other = longName + window.longName;", "const e=1,t=e+window.longName;"),
        # object keys stay, shorthand properties keep their key
        ("const value = 1; const o = { value, key: value, value: 2 };", "const e=1;const t={value:e,key:e,value:2};"),
        # arrow parameters (with a default that refers to another), catch bindings, patterns
        ("const f = (alpha, beta = alpha) => beta;", "const n=(e,t=e)=>t;"),
        ("try { x(); } catch (err) { err.name; }", "try{x();}catch(e){e.name;}"),
        # a promise's .catch(handler) names no binding: a global handler stays itself
        ("const p = go(); p.catch(Boolean); p?.catch(Boolean);", "const e=go();e.catch(Boolean);e?.catch(Boolean);"),
        ("for (const [key, val] of list) use(key, val);", "for(const[e,t]of list)use(e,t);"),
        ("const g = item => item.src;", "const t=e=>e.src;"),
        # a parenthesised function expression (what install() is written as)
        ("const f = (function (alpha, ...beta) { return beta[alpha]; });", "const n=(function(e,...t){return t[e];});"),
        ("let a1, b1 = 2; a1 = { b1 };", "let e,t=2;e={b1:t};"),
    ],
)
def test_minify_cases(source: str, minified: str) -> None:
    assert minify_js(source) == minified


def test_minified_guard_keeps_its_public_names() -> None:
    code = load_guard_code()
    assert len(code) < len(compact_js(GUARD_JS))
    for name in ("__tagGateGuard", "errors:", "blocked:", "T:", "decide:", "granted:", "pass:", "sync:", "i:"):
        assert name in code, name


def test_guard_code_has_one_placeholder_and_the_script_embeds_the_table() -> None:
    code = load_guard_code()
    assert code.count('"__TG_RULES__"') == 1
    body = make_guard(make_policy(None)).script(read_consent(None, None), "www.shop.test")
    assert '"__TG_RULES__"' not in body and body.startswith(code.split('"__TG_RULES__"')[0])
    assert "</script" not in body.lower()


def test_guard_sizes_are_reported() -> None:
    sizes = guard_sizes()
    print(f"guard.js: {sizes}")
    assert sizes["compact"] < sizes["source"]


def test_catalog_type_is_what_the_builder_reads() -> None:
    assert isinstance(make_policy(None).catalog, Catalog)


def test_a_worker_builds_the_guard_before_its_first_gated_page() -> None:
    """Making a config's stages minifies the guard's code (about 35 ms, once per
    process) and builds the no-cookie visitor's script, so the first gated page a worker
    serves does not wait for either; with the guard off, neither is built."""
    load_guard_code.cache_clear()
    split_guard_code.cache_clear()
    off = Stages(
        parse_config({"server": {"upstream": "http://127.0.0.1:9"}, "html": {"guard": {"enabled": False}}}), Metrics()
    )
    assert off.layers.guard is None
    assert load_guard_code.cache_info().currsize == 0
    stages = Stages(parse_config({"server": {"upstream": "http://127.0.0.1:9"}}), Metrics())
    assert stages.layers.guard is not None
    assert load_guard_code.cache_info().currsize == 1
    assert split_guard_code.cache_info().currsize == 1
    nobody = stages.visitor((), None).consent
    assert nobody.key in stages.layers.guard._scripts.table


def test_the_guard_checks_every_attribute_the_markup_gate_selects() -> None:
    """The guard's element → attribute table (guard.js) and the HTML gate's selectors
    (proxy.html.selection) are two readings of one fact: which attributes make an element
    fetch. Every `tag[attribute]` the gate selects in markup is one the guard checks when
    a page's code sets it (a `<col background>` set by `setAttribute` reached a refused
    vendor while the gate removed the same in markup), `<base href>` included (it sends
    relative URLs to its host)."""
    spec = re.search(r'"(script:src[^"]*)"\.split\(" "\)', GUARD_JS)
    assert spec is not None
    guard = {(e.split(":")[0].lower(), a) for e in spec.group(1).split() for a in e.split(":")[1].split(",")}
    selected = set(re.findall(r"(\w+)\[(\w+)\]", " ".join(SELECTORS.values())))
    assert selected <= guard, selected - guard
