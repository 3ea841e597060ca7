"""Tests for proxy.core.cookies: Set-Cookie reading and filtering, Cookie stripping,
withdrawal deletions and client-hint filtering.

Third-party data: the http-state parser suite (README section 2 of the test-data
directory), read from the `testdata` fixture, never copied here.

reliability.md catalogue items covered here: 63, 64, 65, 66, 68 (the http-state
suite), 69. Item 67 (garbled consent cookie) belongs to proxy.core.consent. Item 70
(`Set-Cookie` in a chunked trailer) is an app-level concern: the pure filter only ever
sees the header lines the app hands it, and proxy/app.py must never copy upstream
trailers into headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from proxy.core.cookies import (
    DELETION_EXPIRES,
    HIGH_ENTROPY_CLIENT_HINTS,
    CookiePrefix,
    SetCookie,
    cookie_key,
    expire_cookies,
    filter_accept_ch,
    filter_set_cookies,
    parse_cookie_date,
    parse_cookie_header,
    parse_set_cookie,
    strip_cookie_header,
)

# The date the http-state suite was last updated (README: run with a fixed "now", since
# 0002's Expires=Fri, 07 Aug 2019 has passed).
SUITE_NOW = datetime(2017, 8, 9, tzinfo=UTC)
# A fixed "now" for the catalogue tables, so their 2026 dates stay in the future.
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def always(_: object) -> bool:
    return True


# --------------------------------------------------------------------------------------
# http-state (catalogue item 68)
# --------------------------------------------------------------------------------------

# Where the suite's RFC 6265 (2011) expectation differs from RFC 6265bis, which current
# browsers follow: the Cookie line a 6265bis browser sends instead, and why. Re-derived
# by hand from the 6265bis parsing and storage algorithms; the mini jar below must
# reproduce these exactly from what parse_set_cookie reads.
_NAMELESS = "6265bis-04 (httpwg/http-extensions#159): a pair without '=' is a nameless cookie"
_EMPTY_NAME = "6265bis: '=x' has an empty name and value 'x': a nameless cookie, sent back as 'x'"
HTTP_STATE_6265BIS: dict[str, tuple[str, str]] = {
    "0004": ("foo", _NAMELESS),
    "0021": ("a=b; x; c=d", _EMPTY_NAME),
    "0023": ("foo", _NAMELESS + "; the empty second line is ignored"),
    "0024": ("foo", _NAMELESS + "; '=' (empty name and value) is ignored"),
    "0025": ("foo", _NAMELESS + "; '; bar' (empty name and value) is ignored"),
    "0026": ("foo", _NAMELESS + "; a blank line is ignored"),
    "0027": ("bar", _NAMELESS + "; 'bar' replaces 'foo' (same empty name, domain, path)"),
    "0028": ("foo", _NAMELESS + "; (upstream -expected file is defective, parser.json says none)"),
    "chromium0009": ("BLAHHH", _NAMELESS),
    "chromium0010": ('"BLA\\"HHH"', _NAMELESS + "; the quotes are part of the value"),
    "chromium0012": ("ABC", _EMPTY_NAME),
    "mozilla0012": ('test="fubar! = foo; five', _NAMELESS + "; 'max-age=2.63,' is invalid: session"),
    "mozilla0014": ("six", _NAMELESS),
    "mozilla0015": ("seven", _NAMELESS + "; 'seven' replaces 'six'"),
    "mozilla0016": ("eight", _EMPTY_NAME + "; ' =eight' trims to '=eight' and replaces 'seven'"),
    "mozilla0017": (
        "eight; test=six",
        _EMPTY_NAME + "; the nameless cookie keeps the creation time of 'six', so it sorts first",
    ),
    "name0017": ("a=bar", _EMPTY_NAME + "; '=a=bar' is nameless with value 'a=bar' (WPT name.html)"),
    "name0023": ("foo", _NAMELESS + "; 'foo' is the name-value pair before ';'"),
    "name0025": ("==a=bar", _EMPTY_NAME + "; value '==a=bar'"),
    "name0028": ("a", _EMPTY_NAME),
    "name0031": ('"foo', _NAMELESS + "; the pair stops at the first ';', inside the quotes"),
    "name0032": ('"foo\\"bar', _NAMELESS + "; the pair stops at the first ';', inside the quotes"),
    "name0033": ("aaa", _EMPTY_NAME + "; then nameless 'aaa' replaces nameless 'foo=bar'"),
}


@dataclass(frozen=True)
class HttpStateCase:
    name: str
    set_cookies: tuple[str, ...]
    location: str | None
    expected: str  # the expected Cookie value; "" = no Cookie header


def _decode(raw: bytes) -> str:
    # How aiohttp hands header bytes to Python.
    return raw.decode("utf-8", "surrogateescape")


def load_http_state(root: Path) -> list[HttpStateCase]:
    cases = []
    for test_file in sorted((root / "http-state" / "parser").glob("*-test")):
        name = test_file.name.removesuffix("-test")
        set_cookies: list[str] = []
        location = None
        for raw in test_file.read_bytes().split(b"\n"):
            if not raw:
                continue
            header, _, value = _decode(raw).partition(":")
            value = value.removeprefix(" ")  # README: one leading space, keep the rest
            if header.lower() == "set-cookie":
                set_cookies.append(value)
            elif header.lower() == "location":
                location = value
            else:
                raise AssertionError(f"{name}: unexpected header {header!r}")
        expected_text = _decode((test_file.parent / f"{name}-expected").read_bytes()).strip("\n")
        if expected_text.startswith("Set-Cookie:"):
            # README: known upstream defect, 0028-expected holds Set-Cookie lines.
            assert name == "0028"
            expected_text = ""
        assert expected_text == "" or expected_text.startswith("Cookie: "), name
        cases.append(HttpStateCase(name, tuple(set_cookies), location, expected_text.removeprefix("Cookie: ")))
    return cases


@dataclass
class _Stored:
    name: str
    value: str
    domain: str
    host_only: bool
    path: str
    creation: int


_PSL = PublicSuffixList()


def _domain_match(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _path_match(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


def browser_cookie_line(case: HttpStateCase, now: datetime) -> str:
    """A minimal 6265bis cookie jar over what parse_set_cookie reads: the suite's
    request flow (set on http://home.example.org:8888/cookie-parser, read back on the
    Location target), domain/path/secure/expiry rules, and section 5.8.3 ordering."""
    set_host = "home.example.org"
    store: list[_Stored] = []
    for index, line in enumerate(case.set_cookies):
        cookie = parse_set_cookie(line, now=now)
        if cookie is None:
            continue
        domain, host_only = set_host, True
        if cookie.domain is not None:
            if _PSL.is_public(cookie.domain):
                if cookie.domain != set_host:
                    continue  # a public suffix other than the host itself: ignored
            elif _domain_match(set_host, cookie.domain):
                domain, host_only = cookie.domain, False
            else:
                continue
        if cookie.secure:  # 6265bis: an insecure origin cannot set a Secure cookie
            continue
        path = cookie.path or "/"  # the default-path of /cookie-parser
        old = next(
            (c for c in store if (c.name, c.domain, c.host_only, c.path) == (cookie.name, domain, host_only, path)),
            None,
        )
        creation = index
        if old is not None:
            creation = old.creation
            store.remove(old)
        if not cookie.deletion:
            store.append(_Stored(cookie.name, cookie.value, domain, host_only, path, creation))
    url = urlsplit(
        urljoin(
            "http://home.example.org:8888/cookie-parser?" + case.name,
            case.location or "/cookie-parser-result?" + case.name,
        )
    )
    host, path = url.hostname or "", url.path or "/"
    sent = [
        c
        for c in store
        if (host == c.domain if c.host_only else _domain_match(host, c.domain)) and _path_match(path, c.path)
    ]
    sent.sort(key=lambda c: (-len(c.path), c.creation))
    return "; ".join(f"{c.name}={c.value}" if c.name else c.value for c in sent)


def test_http_state_names_match_browser(testdata: Path, record_count: Callable[[str, int], None]) -> None:
    """Every enabled case: what parse_set_cookie reads, stored by a 6265bis jar, is the
    Cookie line a browser sends (the suite's, or HTTP_STATE_6265BIS where they differ)."""
    cases = [c for c in load_http_state(testdata) if not c.name.startswith("disabled-")]
    assert len(cases) == 218
    assert set(HTTP_STATE_6265BIS) <= {c.name for c in cases}
    mismatches = []
    for case in cases:
        expected = case.expected
        if case.name in HTTP_STATE_6265BIS:
            rfc6265_expected = expected
            expected = HTTP_STATE_6265BIS[case.name][0]
            assert expected != rfc6265_expected, f"{case.name}: exception not needed"
        got = browser_cookie_line(case, SUITE_NOW)
        if got != expected:
            mismatches.append((case.name, case.set_cookies, expected, got))
    assert mismatches == []
    record_count("http-state cases (names and values)", len(cases))


def test_http_state_parser_json_agrees(testdata: Path) -> None:
    """parser.json's `sent` names are the names in the -expected files (0028 aside),
    so the two sources the README offers cannot tell different stories."""
    by_name = {c.name: c for c in load_http_state(testdata)}
    entries = json.loads((testdata / "http-state" / "parser.json").read_text("utf-8"))
    assert len(entries) == len(by_name) == 222
    for entry in entries:
        test = entry["test"]
        name = test if test[0].isdigit() else test.lower().replace("_", "-")
        sent = "; ".join(f"{s['name']}={s['value']}" if s["name"] else s["value"] for s in entry["sent"])
        assert sent == by_name[name].expected, name


def test_http_state_pass_through(testdata: Path, record_count: Callable[[str, int], None]) -> None:
    """Every -test file (disabled ones too): with nothing refused, the Set-Cookie
    lines leave the filter as the same objects, in the same order, never folded."""
    cases = load_http_state(testdata)
    lines_total = 0
    for case in cases:
        lines = list(case.set_cookies)
        result = filter_set_cookies(lines, always)
        assert len(result.kept) == len(lines), case.name
        assert all(a is b for a, b in zip(result.kept, lines, strict=True)), case.name
        assert result.dropped == ()
        lines_total += len(lines)
    assert lines_total == 271  # README: 271 Set-Cookie lines
    record_count("http-state pass-through cases", len(cases))


def test_http_state_never_misnames(testdata: Path) -> None:
    """Every line of every case: the parser never raises, and a name it reads is
    literally the text before the first '=' of the line's name-value pair."""
    for case in load_http_state(testdata):
        for line in case.set_cookies:
            cookie = parse_set_cookie(line, now=SUITE_NOW)
            if cookie is None or cookie.nameless:
                continue
            assert line.partition(";")[0].partition("=")[0].strip(" \t") == cookie.name


# --------------------------------------------------------------------------------------
# parse_set_cookie
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "value", "key", "prefix"),
    [
        # catalogue item 64: name variants
        ("  _ga=1", "_ga", "1", "_ga", CookiePrefix.NONE),
        ("_ga", "", "_ga", "", CookiePrefix.NONE),
        ('"_ga"=1', '"_ga"', "1", '"_ga"', CookiePrefix.NONE),
        ("_GA=1", "_GA", "1", "_GA", CookiePrefix.NONE),
        ("=_ga=1", "", "_ga=1", "_ga", CookiePrefix.NONE),
        ("__Host-x=1", "__Host-x", "1", "__Host-x", CookiePrefix.HOST),
        ("__host-x=1", "__host-x", "1", "__Host-x", CookiePrefix.HOST),
        ("__HOST-x=1", "__HOST-x", "1", "__Host-x", CookiePrefix.HOST),
        ("__Secure-y=1; Secure", "__Secure-y", "1", "__Secure-y", CookiePrefix.SECURE),
        ("__sEcUrE-y=1", "__sEcUrE-y", "1", "__Secure-y", CookiePrefix.SECURE),
        ("__Hostile=1", "__Hostile", "1", "__Hostile", CookiePrefix.NONE),
        # whitespace: SP and HTAB trimmed, inner kept; quotes kept
        ("\t_ga \t=\t GA1.2 \t; Path=/", "_ga", "GA1.2", "_ga", CookiePrefix.NONE),
        ('a="  b "', "a", '"  b "', "a", CookiePrefix.NONE),
        ("a b=c", "a b", "c", "a b", CookiePrefix.NONE),
        ("a=b=c", "a", "b=c", "a", CookiePrefix.NONE),
        ("a=", "a", "", "a", CookiePrefix.NONE),
        # commas never split a line
        ("a=b, c=d", "a", "b, c=d", "a", CookiePrefix.NONE),
        # nameless cookies: classified on what they are read back as
        ("=__Host-x=1", "", "__Host-x=1", "__Host-x", CookiePrefix.NONE),
        (" = b = c ", "", "b = c", "b", CookiePrefix.NONE),
        ("foo;bar=baz", "", "foo", "", CookiePrefix.NONE),
        # non-ASCII is just text
        ("café=thé", "café", "thé", "café", CookiePrefix.NONE),
    ],
)
def test_parse_names(line: str, name: str, value: str, key: str, prefix: CookiePrefix) -> None:
    cookie = parse_set_cookie(line, now=NOW)
    assert cookie is not None
    assert (cookie.name, cookie.value, cookie.key, cookie.prefix) == (name, value, key, prefix)
    assert cookie.line is line
    assert cookie.nameless == (name == "")
    assert cookie_key(name) == (key if name else "")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "=",
        " \t ",
        "; a=b",
        " = ; Max-Age=3600",
        "a=b\x00c",
        "a=b\rc",
        "a=b\nc",
        "a=b; Path=/\x01",
        "a\x7f=b",
        "a=" + "x" * 4096,  # name + value: 4097 octets
        "a=" + "é" * 2048,  # 1 + 4096 octets in UTF-8
        "x" * 4097,  # nameless, value too long
    ],
)
def test_parse_ignored_lines(line: str) -> None:
    assert parse_set_cookie(line, now=NOW) is None


def test_parse_size_limit_is_octets_of_name_and_value() -> None:
    # the limit counts name and value only, after trimming, in UTF-8 octets
    cookie = parse_set_cookie(" a = " + "x" * 4095 + " ; Path=/" + "p" * 1000, now=NOW)
    assert cookie is not None and cookie.path == "/" + "p" * 1000
    assert parse_set_cookie("\t" + "x" * 4096 + "\t", now=NOW) is not None  # HTAB allowed, trimmed
    assert parse_set_cookie("é=" + "x" * 4094, now=NOW) is not None
    assert parse_set_cookie("é=" + "x" * 4095, now=NOW) is None


@pytest.mark.parametrize(
    ("line", "domain", "path", "secure", "http_only"),
    [
        ("a=b", None, None, False, False),
        ("a=b; Domain=.Example.COM; Path=/x; Secure; HttpOnly", "example.com", "/x", True, True),
        ("a=b; domain=example.com; domain=", "example.com", None, False, False),  # empty Domain ignored
        ("a=b; Path=/x; Path=", None, None, False, False),  # last Path: default path
        ("a=b; Path=x", None, None, False, False),
        ("a=b; seCURe=aaaa; httponly", None, None, True, True),
        ('a=b; "Secure"', None, None, False, False),
        ("a=b; Secure qux", None, None, False, False),
        ("a=b; Path=/" + "p" * 1024, None, None, False, False),  # attribute value over 1024: ignored
        ("a=b; Path=/" + "p" * 1022, None, "/" + "p" * 1022, False, False),
        ("a=b; Path=/" + "é" * 512, None, None, False, False),  # 1025 octets in UTF-8
    ],
)
def test_parse_attributes(line: str, domain: str | None, path: str | None, secure: bool, http_only: bool) -> None:
    cookie = parse_set_cookie(line, now=NOW)
    assert cookie is not None
    assert (cookie.domain, cookie.path, cookie.secure, cookie.http_only) == (domain, path, secure, http_only)


@pytest.mark.parametrize(
    ("line", "deletion"),
    [
        ("_ga=; Max-Age=0", True),  # catalogue item 65
        ("_ga=x; max-age=-1", True),
        ("_ga=x; MAX-AGE = -20 ", True),
        ("_ga=x; Max-Age=-99999999999999999999999", False),  # not an int64: Chromium ignores it
        ("_ga=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", True),
        ("_ga=; expires=Thu, 10 Apr 1980 16:33:12 GMT; Path=/", True),
        ("_ga=; Expires=Wed, 31-Dec-2024 23:59:59 GMT", True),
        ("_ga=; Expires=Wed, 01 Jan 2025 00:00:00 GMT", True),  # == now
        ("_ga=; Max-Age=0; Expires=Wed, 21 Oct 2026 07:28:00 GMT", True),  # Max-Age wins
        ("_ga=1", False),
        ("_ga=1; Max-Age=60", False),
        ("_ga=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT", False),  # Max-Age wins
        ("_ga=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", False),
        ("_ga=1; Expires=Wed, 01 Jan 2025 00:00:01 GMT", False),
        ("_ga=1; Expires=yesterday", False),  # unparseable: ignored, session cookie
        # Conservative where the spec and Chromium read repeated or odd attributes
        # differently: a "deletion" is let through unclassified, so all must agree.
        ("_ga=1; Max-Age=0; Max-Age=abc", False),
        ("_ga=1; Max-Age=+0", False),
        ("_ga=1; Max-Age=50,399; Expires=Thu, 01 Jan 1970 00:00:00 GMT", False),
        ("_ga=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Expires=never", False),
        ("_ga=1; Max-Age=0" + " " * 2000 + "0", False),
        ("_ga=1; Max-Age=" + "0" * 1025, False),  # attribute value over 1024 octets: ignored
    ],
)
def test_parse_deletion(line: str, deletion: bool) -> None:
    cookie = parse_set_cookie(line, now=NOW)
    assert cookie is not None
    assert cookie.deletion is deletion


def test_parse_deletion_defaults_to_the_current_time() -> None:
    cookie = parse_set_cookie("a=b; Expires=Fri, 07 Aug 2007 08:04:19 GMT")
    assert cookie is not None and cookie.deletion
    cookie = parse_set_cookie("a=b; Expires=Fri, 07 Aug 9999 08:04:19 GMT")
    assert cookie is not None and not cookie.deletion


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wed, 21 Oct 2026 07:28:00 GMT", datetime(2026, 10, 21, 7, 28, tzinfo=UTC)),
        ("Sun, 18-Apr-2027 21:06:29 GMT", datetime(2027, 4, 18, 21, 6, 29, tzinfo=UTC)),
        ("Fri 07 Aug 2019 08:04:19 GMT, baz=qux", datetime(2019, 8, 7, 8, 4, 19, tzinfo=UTC)),
        ("Thursday, 01-Jan-70 00:00:00 GMT", datetime(1970, 1, 1, tzinfo=UTC)),
        ("01 Jan 69 1:2:3", datetime(2069, 1, 1, 1, 2, 3, tzinfo=UTC)),
        ("2026 oct 21 07:28:00", datetime(2026, 10, 21, 7, 28, tzinfo=UTC)),
        ("Octopus 9 2001 23:59:59xyz", datetime(2001, 10, 9, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_cookie_date(text: str, expected: datetime) -> None:
    assert parse_cookie_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Wed, 21 Oct 2026",  # no time
        "21 Oct 2026 07:28",  # incomplete time
        "Wed, 32 Oct 2026 07:28:00 GMT",
        "Wed, 31 Feb 2026 07:28:00 GMT",
        "Wed, 21 Oct 1600 07:28:00 GMT",
        "Wed, 21 Oct 2026 24:00:00 GMT",
        "Wed, 21 Xyz 2026 07:28:00 GMT",
        "Wed, 21 Oct 20266 07:28:00 GMT",
        "Wed, ٢١ Oct 2026 07:28:00 GMT",  # Arabic-Indic digits are not DIGIT
    ],
)
def test_parse_cookie_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cookie_date(text)


# --------------------------------------------------------------------------------------
# filter_set_cookies (catalogue items 63, 64, 65, 69)
# --------------------------------------------------------------------------------------

ALLOWLIST = frozenset({"sid", "__Host-x"})  # essential cookies: exact keys
CATALOGUE = {"_ga": "analytics", "_fbp": "advertising"}


def toy_policy(granted: frozenset[str]) -> Callable[[SetCookie], bool]:
    """Stand-in for proxy.core.policy: essential by exact key, known vendors by category,
    nameless and unknown cookies non-essential (refused without consent)."""

    def keep(cookie: SetCookie) -> bool:
        if cookie.key in ALLOWLIST:
            return True
        return CATALOGUE.get(cookie.key, "unknown") in granted

    return keep


def test_item_63_three_lines_expires_comma() -> None:
    lines = [
        "sid=abc; Path=/; HttpOnly",
        "_ga=GA1.2.3; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/",
        "lang=en; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
    ]
    result = filter_set_cookies(lines, lambda c: c.key != "_ga", now=NOW)
    assert result.kept == (lines[0], lines[2])
    assert result.kept[0] is lines[0] and result.kept[1] is lines[2]
    assert [c.name for c in result.dropped] == ["_ga"]
    assert result.dropped[0].line is lines[1]
    everything = filter_set_cookies(lines, always, now=NOW)
    assert all(a is b for a, b in zip(everything.kept, lines, strict=True))


@pytest.mark.parametrize(
    ("line", "kept_without_consent", "kept_with_analytics"),
    [
        ("  _ga=1", False, True),
        ("_ga", False, False),  # nameless: non-essential whatever its value
        ('"_ga"=1', False, False),  # unknown name
        ("_GA=1", False, False),  # unknown name (names are case-sensitive)
        ("=_ga=1", False, True),  # read back as _ga=1
        ("__Host-x=1; Secure; Path=/", True, True),  # allowlisted
        ("__host-x=1; Secure; Path=/", True, True),  # same prefix class, same key
        ("sid=1", True, True),
        ("SID=1", False, False),  # allowlist is exact
        (" sid =1", True, True),
        ("_fbp=fb.1", False, False),
    ],
)
def test_item_64_name_variants(line: str, kept_without_consent: bool, kept_with_analytics: bool) -> None:
    for granted, expected in (
        (frozenset(), kept_without_consent),
        (frozenset({"analytics"}), kept_with_analytics),
    ):
        result = filter_set_cookies([line], toy_policy(granted), now=NOW)
        assert (result.kept == (line,)) is expected, (line, granted)
        assert len(result.kept) + len(result.dropped) == 1


@pytest.mark.parametrize(
    "line",
    [
        "_ga=; Max-Age=0",
        "_ga=; Max-Age=0; Domain=example.com; Path=/",
        "_fbp=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "_ga=; expires=Wed, 21-Oct-2015 07:28:00 GMT; max-age=-1",
        "=_ga=; Max-Age=0",
    ],
)
def test_item_65_deletions_pass(line: str) -> None:
    def refuse(cookie: SetCookie) -> bool:
        raise AssertionError("a deletion must not even be classified")

    result = filter_set_cookies([line], refuse, now=NOW)
    assert result.kept == (line,) and result.kept[0] is line


def test_ignored_lines() -> None:
    """Lines a 6265bis browser ignores: pass when they set nothing under any reading,
    otherwise classified on a lenient reading (fail closed)."""
    inert = ["", "=", "   ", "; Path=/", "\x00_ga=1"]
    lax = ["_ga=1\x00", "_ga=1\x01", "_ga=" + "x" * 5000, "x" * 5000]
    calls: list[SetCookie] = []

    def refuse(cookie: SetCookie) -> bool:
        calls.append(cookie)
        return False

    result = filter_set_cookies(inert + lax, refuse, now=NOW)
    assert result.kept == tuple(inert)
    assert [c.key for c in result.dropped] == ["_ga", "_ga", "_ga", ""]
    assert [c.line for c in result.dropped] == lax
    assert not any(c.deletion for c in calls)
    # an ignored "deletion" is not trusted as one
    assert filter_set_cookies(["_ga=; Max-Age=0\x01"], refuse, now=NOW).kept == ()
    assert filter_set_cookies(inert + lax, always, now=NOW).kept == tuple(inert + lax)


def test_item_69_fifty_lines_one_of_4kb() -> None:
    lines = [f"c{i}=v{i}; Path=/; Max-Age=3600" for i in range(50)]
    lines[17] = "big=" + "x" * (4096 - 3) + "; Path=/; Secure"  # name + value = 4096 octets
    assert sum(len(line) for line in lines) > 4096
    everything = filter_set_cookies(lines, always, now=NOW)
    assert len(everything.kept) == 50
    assert all(a is b for a, b in zip(everything.kept, lines, strict=True))
    big = parse_set_cookie(lines[17], now=NOW)
    assert big is not None and big.name == "big" and big.secure
    result = filter_set_cookies(lines, lambda c: c.key != "big" and c.key != "c3", now=NOW)
    assert [c.key for c in result.dropped] == ["c3", "big"]
    assert result.kept == tuple(line for i, line in enumerate(lines) if i not in (3, 17))


# --------------------------------------------------------------------------------------
# strip_cookie_header (catalogue item 66)
# --------------------------------------------------------------------------------------


def refuse_ga(key: str) -> bool:
    return key not in {"_ga", "_fbp", "", "__Secure-t"}


@pytest.mark.parametrize(
    ("values", "expected", "stripped"),
    [
        (["a=1; _ga=2; consent=v1"], "a=1; consent=v1", ("_ga",)),
        (["a=1; _ga=2", "consent=v1"], "a=1; consent=v1", ("_ga",)),  # two Cookie headers joined
        (["a=1", "b=2"], "a=1; b=2", ()),
        (["_ga=1; _fbp=2"], None, ("_ga", "_fbp")),
        # ';' splits even inside quotes (browsers never send one in a value): ` c"` is nameless
        (['x="a b; c"; _ga=1'], 'x="a b', ("", "_ga")),
        (
            ['q="a,b" ;_ga=1;  r = s ;'],
            'q="a,b"; r = s',
            ("_ga",),
        ),  # pairs byte-for-byte, ',' not a separator
        (["a=1, _ga=2; b=3"], "a=1, _ga=2; b=3", ()),  # ',' is not a separator
        (["_ga; a=1; =_fbp"], "a=1", ("", "")),  # nameless pairs: key ""
        (["__secure-t=1; a=1"], "a=1", ("__secure-t",)),  # keep() sees the normalised key
        (["a=1;;; ;b=2"], "a=1;;; ;b=2", ()),  # nothing removed: the very same header
        ([";  ;"], None, ()),
        ([], None, ()),
    ],
)
def test_item_66_strip(values: list[str], expected: str | None, stripped: tuple[str, ...]) -> None:
    result = strip_cookie_header(values, refuse_ga)
    assert (result.value, result.stripped) == (expected, stripped)


def test_strip_returns_same_object_when_nothing_removed() -> None:
    header = "a=1;  b = 2 ;c"
    assert strip_cookie_header([header], always).value is header


def test_strip_agrees_with_parse_cookie_header() -> None:
    header = ' a=1; _ga=GA1.2 ;"q"=x; =y; z ; b=="2"'
    result = strip_cookie_header([header], lambda key: key != "_ga")
    assert result.value is not None
    assert parse_cookie_header(result.value) == [p for p in parse_cookie_header(header) if p[0] != "_ga"]


# --------------------------------------------------------------------------------------
# expire_cookies
# --------------------------------------------------------------------------------------


def deletion(name: str, domain: str | None = None, secure: bool = False) -> str:
    line = f"{name}=; Max-Age=0; Expires={DELETION_EXPIRES}; Path=/"
    if domain:
        line += f"; Domain={domain}"
    return line + ("; Secure" if secure else "")


@pytest.mark.parametrize(
    ("host", "secure", "domains"),
    [
        ("www.shop.example.co.uk", False, ["example.co.uk", "shop.example.co.uk", "www.shop.example.co.uk"]),
        (
            "WWW.Shop.Example.CO.UK:8443",
            True,
            ["example.co.uk", "shop.example.co.uk", "www.shop.example.co.uk"],
        ),
        ("example.com", False, ["example.com"]),
        ("example.com:80", False, ["example.com"]),
        ("co.uk", False, []),  # a public suffix: host-only only
        ("github.io", False, []),
        ("alice.github.io", True, ["alice.github.io"]),  # private-section suffix respected
        ("127.0.0.1", False, []),
        ("127.0.0.1:8080", True, []),
        ("[::1]:8080", False, []),
        ("::1", False, []),
        ("localhost", False, []),
        ("localhost:3000", True, []),
        ("intranet", False, []),
        ("example.com.", False, []),
        ("münchen.de", False, ["xn--mnchen-3ya.de"]),
        ("www.xn--mnchen-3ya.de", False, ["xn--mnchen-3ya.de", "www.xn--mnchen-3ya.de"]),
        ("bad host.example", False, []),
        ("", False, []),
    ],
)
def test_expire_cookies_domains(host: str, secure: bool, domains: list[str]) -> None:
    expected = [deletion("_ga", None, secure)] + [deletion("_ga", d, secure) for d in domains]
    lines = expire_cookies(["_ga"], host, secure, 50)
    assert lines == expected
    assert not any("Domain=co.uk" in line.split("; ") for line in lines)


def test_expire_cookies_prefixes_order_and_cap() -> None:
    host = "www.example.com"
    names = ["_ga", "", "__Host-id", "_ga", "__secure-t", "a;b", "a=b", " pad", "ctl\x01", "_fbp"]
    lines = expire_cookies(names, host, False, 100)
    assert lines == [
        deletion("_ga"),
        deletion("_ga", "example.com"),
        deletion("_ga", "www.example.com"),
        deletion("__Host-id", None, True),  # host-only, Secure, Path=/
        deletion("__secure-t", None, True),  # Secure always
        deletion("__secure-t", "example.com", True),
        deletion("__secure-t", "www.example.com", True),
        deletion("_fbp"),
        deletion("_fbp", "example.com"),
        deletion("_fbp", "www.example.com"),
    ]
    for cap in range(len(lines) + 2):
        assert expire_cookies(names, host, False, cap) == lines[:cap]
    assert expire_cookies(names, host, False, -1) == []


# --------------------------------------------------------------------------------------
# filter_accept_ch
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "Sec-CH-UA, Sec-CH-UA-Mobile, Sec-CH-UA-Platform",
            "Sec-CH-UA, Sec-CH-UA-Mobile, Sec-CH-UA-Platform",
        ),
        (
            "Sec-CH-UA-Full-Version-List, sec-ch-ua-platform, Sec-CH-UA-Model, DPR, Viewport-Width",
            "sec-ch-ua-platform",
        ),
        ("Sec-CH-UA-Arch,Sec-CH-UA-Bitness,Sec-CH-UA-WoW64", None),
        ("Device-Memory, Save-Data", "Save-Data"),
        ("Sec-CH-UA-Form-Factors, Sec-CH-New-Hint-2030", None),  # unknown hints removed too
        ("", None),
        (" , ", None),
    ],
)
def test_filter_accept_ch(value: str, expected: str | None) -> None:
    assert filter_accept_ch(value) == expected


def test_filter_accept_ch_removes_every_documented_high_entropy_hint() -> None:
    for hint in HIGH_ENTROPY_CLIENT_HINTS:
        assert filter_accept_ch(hint) is None
        assert filter_accept_ch(hint.lower()) is None
        assert filter_accept_ch(f"Sec-CH-UA, {hint}") == "Sec-CH-UA"
    value = "Sec-CH-UA-Mobile, Sec-CH-UA"
    assert filter_accept_ch(value) is value


# --------------------------------------------------------------------------------------
# Hypothesis properties
# --------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)
COOKIE_CHARS = st.sampled_from(list("ab_G=;, \t\"'-.:/\x00\x01é") + ["__Host-", "__secure-", "Max-Age=0", "Expires="])
COOKIE_TEXT = st.lists(COOKIE_CHARS, max_size=30).map("".join)
SET_COOKIE_LINE = st.one_of(
    COOKIE_TEXT,
    ANY_TEXT,
    st.builds(
        lambda n, v, a: f"{n}={v}{a}",
        COOKIE_TEXT,
        COOKIE_TEXT,
        st.sampled_from(["", "; Max-Age=0", "; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "; Secure; Path=/"]),
    ),
)


@given(ANY_TEXT)
def test_parse_set_cookie_never_raises(line: str) -> None:
    cookie = parse_set_cookie(line, now=NOW)
    if cookie is not None:
        assert cookie.line is line
        assert cookie.name or cookie.value


@given(st.lists(SET_COOKIE_LINE, max_size=12), st.functions(like=always, returns=st.booleans(), pure=True))
def test_filter_keeps_a_subsequence_of_the_same_objects(lines: list[str], keep: Callable[[SetCookie], bool]) -> None:
    result = filter_set_cookies(lines, keep, now=NOW)
    assert len(result.kept) + len(result.dropped) == len(lines)
    position = 0
    for kept in result.kept:  # each kept object appears, in order
        while lines[position] is not kept:
            position += 1
        position += 1
    dropped_lines = [c.line for c in result.dropped]
    assert all(any(line is d for line in lines) for d in dropped_lines)
    for line in lines:
        cookie = parse_set_cookie(line, now=NOW)
        if cookie is not None and cookie.deletion:
            assert any(line is k for k in result.kept)


PAIR_CHARS = st.sampled_from(list('ab_G= \t",.é') + ["__Host-", "_ga"])
PAIR_TEXT = st.lists(PAIR_CHARS, max_size=12).map("".join)


@given(
    st.lists(st.lists(PAIR_TEXT, max_size=6).map(";".join), max_size=3),
    st.functions(like=always, returns=st.booleans(), pure=True),
)
def test_strip_never_changes_a_kept_pair(values: list[str], keep: Callable[[str], bool]) -> None:
    result = strip_cookie_header(values, keep)
    pairs = [s.strip(" \t") for v in values for s in v.split(";") if s.strip(" \t")]
    expected = [p for p in pairs if keep(cookie_key(p.partition("=")[0].rstrip(" \t") if "=" in p else ""))]
    if not expected:
        assert result.value is None
    elif len(values) == 1 and len(expected) == len(pairs):
        assert result.value is values[0]
    else:
        assert result.value == "; ".join(expected)
    assert len(result.stripped) == len(pairs) - len(expected)


HOSTS = st.one_of(
    st.sampled_from(["www.shop.example.co.uk", "example.com:443", "127.0.0.1", "[::1]", "localhost", "co.uk"]),
    st.text(st.sampled_from(list("abc.-:[]1é")), max_size=20),
)


@given(st.lists(ANY_TEXT | COOKIE_TEXT, max_size=6), HOSTS, st.booleans(), st.integers(-1, 30))
def test_expire_cookies_lines_are_deletions_of_the_named_cookies(
    names: list[str], host: str, secure: bool, cap: int
) -> None:
    lines = expire_cookies(names, host, secure, cap)
    assert len(lines) <= max(cap, 0)
    for line in lines:
        cookie = parse_set_cookie(line, now=NOW)
        assert cookie is not None and cookie.deletion
        assert cookie.name in names and cookie.name
        assert cookie.path == "/"
        assert cookie.secure == (secure or cookie.prefix is not CookiePrefix.NONE)
        if cookie.prefix is CookiePrefix.HOST:
            assert cookie.domain is None
        line.encode("utf-8")  # writable as a header
