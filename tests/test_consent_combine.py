"""Several consent managers decided at once: what each speaks for, when, and the outcome.

The rule (README "When consent managers disagree", `proxy.core.consent` docstring):
per category, the sources that speak for it vote; of the dated voters only the most
recent counts (all of the latest when their precision cannot order them); the category
is granted only when every remaining vote grants it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from proxy.core.categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from proxy.core.consent import (
    DEFAULT_SETTINGS,
    DecidedAt,
    Reading,
    combine_decisions,
    read_consent,
    read_cookiebot,
    read_didomi,
    read_native,
    read_onetrust,
    read_tcf,
)
from proxy.core.consent.dates import (
    DAY,
    from_iso8601,
    from_js_date,
    from_tcf_deciseconds,
    from_unix_millis,
    from_unix_seconds,
)
from tests.test_tcf import MINIMAL, encode

ALL = frozenset({FUNCTIONAL, ANALYTICS, ADVERTISING, SOCIAL})
CONSENT_ID = "AAAAAAAAAAAAAAAAAAAAAA"


def ts(text: str) -> int:
    """Unix seconds of an ISO 8601 UTC time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


OLD = ts("2023-03-01T09:30:00")
FRESH = ts("2024-06-01T12:00:00")
SAME_DAY_LATER = ts("2024-06-01T18:00:00")
FRESH_DAY = ts("2024-06-01T00:00:00")


# --------------------------------------------------------------------------- cookies


def tg(granted: str, at: int | None = None) -> str:
    return f"tg_consent={granted}" + (f"~2~{at}~{CONSENT_ID}" if at is not None else "")


def js_date(at: int) -> str:
    """`Date.prototype.toString()` in UTC+09:00, as OneTrust writes `datestamp`."""
    moment = datetime.fromtimestamp(at + 9 * 3600, UTC)
    return moment.strftime("%a %b %d %Y %H:%M:%S GMT+0900 (Korean Standard Time)")


def iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def onetrust(groups: dict[str, int], *, datestamp: int | None = None, closed: int | None = None) -> str:
    fields = {"isGpcEnabled": "0", "version": "202310.2.0", "interactionCount": "1"}
    if datestamp is not None:
        fields["datestamp"] = js_date(datestamp)
    fields["groups"] = ",".join(f"{g}:{v}" for g, v in groups.items())
    cookie = f"OptanonConsent={urlencode(fields)}"
    if closed is not None:
        cookie += f"; OptanonAlertBoxClosed={iso(closed)}"
    return cookie


OT_ALL = {"C0001": 1, "C0002": 1, "C0003": 1, "C0004": 1, "C0005": 1}
OT_NONE = {"C0001": 1, "C0002": 0, "C0003": 0, "C0004": 0, "C0005": 0}


def cookiebot(preferences: bool, statistics: bool, marketing: bool, utc_ms: int | None = None) -> str:
    def js(flag: bool) -> str:
        return "true" if flag else "false"

    utc = f"%2Cutc:{utc_ms}" if utc_ms is not None else ""
    return (
        "CookieConsent={stamp:%27AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D%3D%27%2Cnecessary:true"
        f"%2Cpreferences:{js(preferences)}%2Cstatistics:{js(statistics)}%2Cmarketing:{js(marketing)}"
        f"%2Cmethod:%27explicit%27%2Cver:1{utc}%2Cregion:%27pl%27}}"
    )


def tc_string(purposes: set[int], last_updated_s: int) -> str:
    return encode(replace(MINIMAL, purposes_consent=frozenset(purposes), last_updated=last_updated_s * 10))


TC_ACCEPT = set(range(1, 11))


def didomi(token: dict[str, object]) -> str:
    return "didomi_token=" + base64.b64encode(json.dumps(token).encode()).decode()


def cc_cookie(categories: list[str]) -> str:
    return "cc_cookie=" + json.dumps({"categories": categories}).replace('"', "%22").replace(",", "%2C")


# --------------------------------------------------------------------------- outcomes

COMBINED: list[tuple[str, str, frozenset[str], str]] = [
    # id, Cookie header -> granted (besides essential), source
    (
        "issue example: a stale OneTrust accept-all (first in order) loses to a fresh Cookiebot refusal",
        f"{onetrust(OT_ALL, closed=OLD)}; {cookiebot(False, False, False, FRESH * 1000)}",
        frozenset(),
        "cookiebot",
    ),
    (
        "a stale Cookiebot accept-all loses to a fresh OneTrust refusal",
        f"{cookiebot(True, True, True, OLD * 1000)}; {onetrust(OT_NONE, closed=FRESH)}",
        frozenset(),
        "onetrust",
    ),
    (
        "... and a fresh Cookiebot accept-all beats an old OneTrust refusal",
        f"{cookiebot(True, True, True, FRESH * 1000)}; {onetrust(OT_NONE, closed=OLD)}",
        ALL,
        "cookiebot",
    ),
    (
        "OneTrust is dated by OptanonAlertBoxClosed before its datestamp",
        f"{cookiebot(True, True, True, FRESH * 1000)}; {onetrust(OT_NONE, datestamp=SAME_DAY_LATER, closed=OLD)}",
        ALL,
        "cookiebot",
    ),
    (
        "without OptanonAlertBoxClosed the datestamp dates it",
        f"{cookiebot(True, True, True, FRESH * 1000)}; {onetrust(OT_NONE, datestamp=SAME_DAY_LATER)}",
        frozenset(),
        "onetrust",
    ),
    (
        "an undated accept-all never outvotes a dated refusal",
        f"{onetrust(OT_ALL)}; {tg('none', OLD)}",
        frozenset(),
        "tag-gate",
    ),
    (
        "an undated refusal wins over a fresh dated grant",
        f"{tg('analytics', FRESH)}; {cc_cookie(['analytics', 'marketing'])}",
        frozenset({ANALYTICS}),
        "tag-gate",
    ),
    (
        "two undated sources: only what both grant",
        f"{tg('analytics.social')}; {cc_cookie(['analytics', 'marketing', 'functional'])}",
        frozenset({ANALYTICS}),
        "tag-gate",
    ),
    (
        "the banner's fresh refusal beats a stale OneTrust accept-all in any source order",
        f"{onetrust(OT_ALL, datestamp=OLD, closed=OLD)}; {tg('analytics', FRESH)}",
        frozenset({ANALYTICS}),
        "tag-gate",
    ),
    (
        "the banner's fresh grant beats a stale OneTrust refusal",
        f"{onetrust(OT_NONE, closed=OLD)}; {tg('functional.analytics.advertising.social', FRESH)}",
        ALL,
        "tag-gate",
    ),
    (
        "a day-level TC string and a same-day stamp cannot be ordered: the refusal wins",
        f"{onetrust(OT_ALL, closed=FRESH)}; euconsent-v2={tc_string(set(), FRESH_DAY)}",
        frozenset({FUNCTIONAL, SOCIAL}),
        "tcf",
    ),
    (
        "a TC string from the day before is older than the stamp",
        f"{onetrust(OT_ALL, closed=FRESH)}; euconsent-v2={tc_string(set(), FRESH_DAY - int(DAY))}",
        ALL,
        "onetrust",
    ),
    (
        "OneTrust accept-all with its TC string: the string does not speak for social or functional",
        f"{onetrust(OT_ALL, closed=FRESH)}; euconsent-v2={tc_string(TC_ACCEPT, FRESH_DAY)}",
        ALL,
        "onetrust",
    ),
    (
        "a OneTrust cookie without a social group has nothing to say about social",
        f"{onetrust({'C0001': 1, 'C0002': 0, 'C0003': 1, 'C0004': 0})}; {tg('social.functional')}",
        frozenset({SOCIAL, FUNCTIONAL}),
        "tag-gate",
    ),
    (
        "Didomi's disabled vendor beats the same TC string read by the TCF source (same moment)",
        f"{didomi({'updated': iso(FRESH), 'vendors': {'disabled': ['c:hotjar']}})}; "
        f"euconsent-v2={tc_string(TC_ACCEPT, FRESH_DAY)}",
        frozenset({ADVERTISING}),
        "didomi",
    ),
    (
        "three sources, two dated: the most recent dated one and the undated one must both grant",
        f"{cookiebot(False, True, True, OLD * 1000)}; {onetrust(OT_NONE, closed=OLD - 10)}; "
        f"{cc_cookie(['analytics', 'marketing'])}",
        frozenset({ANALYTICS, ADVERTISING}),
        "cookieconsent",
    ),
    (
        "agreeing sources: the first in order is named",
        f"{onetrust(OT_ALL, closed=OLD)}; {cookiebot(True, True, True, FRESH * 1000)}",
        ALL,
        "onetrust",
    ),
    (
        "a broken consent cookie anywhere in the order means essential only",
        f"{tg('functional.analytics.advertising.social', FRESH)}; CookieConsent=%zz",
        frozenset(),
        "cookiebot",
    ),
    (
        "an undecided source takes no part",
        f"{tg('analytics', OLD)}; OptanonConsent=interactionCount%3D0%26groups%3DC0002%3A1%2CC0004%3A1",
        frozenset({ANALYTICS}),
        "tag-gate",
    ),
]


@pytest.mark.parametrize(("header", "granted", "source"), [c[1:] for c in COMBINED], ids=[c[0] for c in COMBINED])
def test_combined_decisions(header: str, granted: frozenset[str], source: str) -> None:
    state = read_consent(header, None)
    assert (state.granted - {ESSENTIAL}, state.source) == (granted, source)


def test_broken_source_reason_and_gpc_on_top() -> None:
    broken = read_consent(f"{tg('analytics', FRESH)}; CookieConsent=%zz", None)
    assert (broken.decided, broken.reason) == (False, "malformed")
    combined = read_consent(f"{onetrust(OT_ALL, closed=FRESH)}; {cookiebot(True, True, True, OLD * 1000)}", "1")
    assert combined.granted == {ESSENTIAL, FUNCTIONAL, ANALYTICS, SOCIAL}
    assert (combined.decided, combined.reason, combined.gpc) == (True, "ok", True)


# ------------------------------------------------------------------ the rule alone


def at(start: float, width: float = 1.0) -> DecidedAt:
    return DecidedAt(start, start + width)


def decision(granted: set[str], covers: set[str] | None = None, when: DecidedAt | None = None) -> Reading:
    return Reading(True, True, frozenset(granted), covers=None if covers is None else frozenset(covers), at=when)


RULE: list[tuple[str, list[Reading], set[str]]] = [
    ("refusal wins undated", [decision({ANALYTICS, SOCIAL}), decision({ANALYTICS})], {ANALYTICS}),
    ("latest wins", [decision(set(ALL), when=at(20)), decision(set(), when=at(10))], set(ALL)),
    ("latest refusal wins", [decision(set(ALL), when=at(10)), decision(set(), when=at(20))], set()),
    ("touching spans are ordered", [decision(set(ALL), when=at(10)), decision(set(), when=at(11))], set()),
    ("overlapping spans vote together", [decision(set(ALL), when=at(10, 5)), decision(set(), when=at(12))], set()),
    ("undated voter still votes", [decision(set(ALL), when=at(20)), decision({SOCIAL})], {SOCIAL}),
    ("coverage: silent on social", [decision({ANALYTICS}, covers={ANALYTICS}), decision({SOCIAL})], {SOCIAL}),
    ("coverage: nobody speaks, not granted", [decision({SOCIAL}, {SOCIAL}), decision(set(), {ANALYTICS})], {SOCIAL}),
    (
        "latest among three",
        [decision(set(), when=at(1)), decision({SOCIAL}, when=at(3)), decision({ANALYTICS}, when=at(2))],
        {SOCIAL},
    ),
]


@pytest.mark.parametrize(("readings", "granted"), [r[1:] for r in RULE], ids=[r[0] for r in RULE])
def test_combine_rule(readings: list[Reading], granted: set[str]) -> None:
    assert combine_decisions(readings, DEFAULT_SETTINGS.categories) == granted


# ------------------------------------------------------- what each reader speaks for


def test_readers_cover_and_date() -> None:
    ot = read_onetrust(urlencode({"interactionCount": "1", "groups": "C0001:1,C0002:0,C0004:1"}))
    assert (ot.covers, ot.at) == (frozenset({ANALYTICS, ADVERTISING}), None)
    dated_ot = read_onetrust(urlencode({"interactionCount": "1", "datestamp": js_date(FRESH), "groups": "C0002:1"}))
    assert dated_ot.at == DecidedAt(FRESH, FRESH + 1)
    cb = read_cookiebot(cookiebot(False, True, False, FRESH * 1000 + 250).partition("=")[2])
    assert (cb.covers, cb.at) == (ALL, DecidedAt(FRESH + 0.25, FRESH + 0.251))
    native = read_native(f"analytics~2~{FRESH}~{CONSENT_ID}")
    assert (native.granted, native.covers, native.at) == (frozenset({ANALYTICS}), None, DecidedAt(FRESH, FRESH + 1))
    assert read_native("analytics").at is None
    tc = read_tcf(tc_string({1, 8, 9, 10}, FRESH_DAY))
    assert (tc.granted, tc.covers, tc.at) == (
        frozenset({ANALYTICS}),
        frozenset({ANALYTICS, ADVERTISING}),
        DecidedAt(FRESH_DAY, FRESH_DAY + DAY),
    )
    token = base64.b64encode(json.dumps({"updated": iso(FRESH), "purposes": {"enabled": ["market_research"]}}).encode())
    dd = read_didomi(token.decode(), None)
    assert (dd.granted, dd.covers, dd.at) == (
        frozenset({ANALYTICS}),
        frozenset({ANALYTICS}),
        DecidedAt(FRESH, FRESH + 0.001),
    )
    undecided = read_onetrust(urlencode({"interactionCount": "0", "datestamp": js_date(FRESH), "groups": "C0002:1"}))
    assert undecided.at is None


DATES: list[tuple[str, str | int, DecidedAt | None]] = [
    ("js", "Thu Sep 26 2024 06:52:32 GMT+0900 (Korean Standard Time)", at(ts("2024-09-25T21:52:32"))),
    ("js without weekday or zone name", "Sep 26 2024 06:52:32 GMT-0130", at(ts("2024-09-26T08:22:32"))),
    ("js bad month", "Thu Foo 26 2024 06:52:32 GMT+0900", None),
    ("js bad day", "Thu Feb 30 2024 06:52:32 GMT+0900", None),
    ("js bad zone", "Thu Sep 26 2024 06:52:32 GMT+2500", None),
    ("iso Z", "2024-08-27T07:52:40.352Z", at(ts("2024-08-27T07:52:40") + 0.352, 0.001)),
    ("iso offset", "2024-08-27T09:52:40+02:00", at(ts("2024-08-27T07:52:40"))),
    ("iso without zone", "2024-08-27T07:52:40", None),
    ("iso before 2000", "1999-12-31T23:59:59Z", None),
    ("iso garbage", "yesterday", None),
    ("seconds", "1717243200", at(1717243200)),
    ("seconds zero", "0", None),
    ("seconds not digits", "17e8", None),
    ("millis", "1717243200123", at(1717243200.123, 0.001)),
    ("tcf day level", 17172000000, at(1717200000, DAY)),
    ("tcf deciseconds", 17172432001, at(1717243200.1, 0.1)),
]


@pytest.mark.parametrize(("text", "expected"), [d[1:] for d in DATES], ids=[d[0] for d in DATES])
def test_dates(text: str | int, expected: DecidedAt | None) -> None:
    if isinstance(text, int):
        got = from_tcf_deciseconds(text)
    elif text.isdigit() and len(text) == 13:
        got = from_unix_millis(text)
    elif text.isdigit() or text == "17e8":
        got = from_unix_seconds(text)
    elif text[:1].isdigit():
        got = from_iso8601(text)
    else:
        got = from_js_date(text)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.earliest == pytest.approx(expected.earliest)
        assert got.latest == pytest.approx(expected.latest)
