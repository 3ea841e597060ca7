"""proxy.core.consent: one table per reader, then resolution, keys, reports and properties."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

import proxy.core.consent
from proxy.core.categories import ADVERTISING, ANALYTICS, BUILTIN_CATEGORIES, ESSENTIAL, FUNCTIONAL, SOCIAL
from proxy.core.consent import (
    DEFAULT_SETTINGS,
    MAX_COOKIE_HEADER_BYTES,
    REASONS,
    SOURCES,
    ConsentSettings,
    ConsentState,
    Reading,
    categories_from_purposes,
    consent_cookie_names,
    consent_key,
    consent_report,
    format_consent,
    read_complianz,
    read_consent,
    read_cookiebot,
    read_cookieconsent,
    read_cookieyes,
    read_didomi,
    read_gpc,
    read_klaro,
    read_native,
    read_onetrust,
    read_osano,
    read_tarteaucitron,
    read_tcf,
    source_cookie_names,
    stated_consent,
    validate_settings,
)
from proxy.core.tcf import parse_tc_string

ALL = (FUNCTIONAL, ANALYTICS, ADVERTISING, SOCIAL)
UNDECIDED = Reading(True, False)
MALFORMED = Reading(True, False, reason="malformed")
OVERSIZED = Reading(True, False, reason="oversized")
ABSENT = Reading(False, False, reason="missing")


def grants(*categories: str) -> Reading:
    return Reading(True, True, frozenset(categories))


def choice(reading: Reading) -> Reading:
    """The choice a reading holds, without what it speaks for and when (tested apart in
    test_reading_covers_and_dates)."""
    return Reading(reading.present, reading.decided, reading.granted, reading.reason)


def b64json(obj: object) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


# TC strings made with the encoder in test_tcf.py (CmpId 31, no vendors), named by
# the purposes they consent to.
TC_ALL_PURPOSES = "CP9Qr_AP9Qr_AAfETDFRAwEgAP_gAAAAAAYgAAAAAAAA"
TC_1_8_9_10 = "CP9Qr_AP9Qr_AAfETDFRAwEgAIHAAAAAAAYgAAAAAAAA"
TC_2_TO_10 = "CP9Qr_AP9Qr_AAfETDFRAwEgAH_AAAAAAAYgAAAAAAAA"
TC_1_TO_9 = "CP9Qr_AP9Qr_AAfETDFRAwEgAP-AAAAAAAYgAAAAAAAA"
TC_LI_ONLY = "CP9Qr_AP9Qr_AAfETDFRAwEgAAAAAP_gAAYgAAAAAAAA"
TC_NONE = "CP9Qr_AP9Qr_AAfETDFRAwEgAAAAAAAAAAYgAAAAAAAA"
TC_VERSION_1 = "BP9Qr_AP9Qr_AAfETDFRAwEgAMEAAAAAAAYgAAAAAAAA"
# field-survey.md §b, Didomi: CmpId 7, every purpose bit 0.
TC_DIDOMI_SAMPLE = (
    "CQEAuYAQEAuYAAHABBENBDFgAAAAAAAAAAAAAAAAAACkoAMAAQUxKQAYAAgpiQgAwABBTEdABgACCmISADAAEFMQ.YAAAAAAAAAAA"
)

ONETRUST_SURVEY = (
    "isGpcEnabled=0&datestamp=Thu+Sep+26+2024+06%3A52%3A32+GMT%2B0900+(Eastern+Indonesia+Time)"
    "&version=202310.2.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=00000000-0000-0000-0000-000000000000"
    "&interactionCount=2&landingPath=NotLandingPage&groups=C0001%3A1%2CC0002%3A1%2CC0004%3A1"
    "&AwaitingReconsent=false&geolocation=ID%3BMU"
)
COOKIEBOT_SURVEY = (
    "{stamp:%270000000000000000000000000000000000000000000000000000%27%2Cnecessary:true%2Cpreferences:false"
    "%2Cstatistics:false%2Cmarketing:false%2Cmethod:%27explicit%27%2Cver:1%2Cutc:1745620490943%2Cregion:%27pl%27}"
)
KLARO_SURVEY = "%7B%22googleAnalytics%22%3Atrue%2C%22youtube%22%3Afalse%2C%22matomo%22%3Atrue%7D"
CC_SURVEY = (
    "%7B%22categories%22%3A%5B%22necessary%22%2C%22analytics%22%5D%2C%22revision%22%3A0%2C%22data%22%3Anull"
    "%2C%22consentTimestamp%22%3A%222026-05-06T15%3A46%3A43.814Z%22%2C%22consentId%22%3A%2200000000-0000-0000-"
    "0000-000000000000%22%2C%22services%22%3A%7B%22necessary%22%3A%5B%5D%2C%22analytics%22%3A%5B%5D%7D%7D"
)
COOKIEYES_SURVEY = (
    "consentid:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,consent:no,action:yes,necessary:yes,functional:no,"
    "analytics:no,performance:no,advertisement:no,other:no"
)
DIDOMI_SURVEY_TOKEN = b64json(
    {
        "user_id": "00000000-0000-0000-0000-000000000000",
        "created": "2024-08-27T07:15:05.610Z",
        "updated": "2024-08-27T07:52:40.352Z",
        "version": 2,
        "purposes": {"disabled": ["geolocation_data", "device_characteristics"]},
        "vendors": {"disabled": ["google", "c:hotjar", "c:mixpanel"]},
        "ac": "AAAA.AAAA",
    }
)


def _cookiebot(**fields: str) -> str:
    return quote("{" + ",".join(f"{k}:{v}" for k, v in fields.items()) + "}", safe="{}:")


# --- one table per reader -----------------------------------------------------------

NATIVE = [
    ("analytics.social", grants(ANALYTICS, SOCIAL)),
    ("functional.analytics.advertising.social", grants(*ALL)),
    ("analytics,social|functional", grants(ANALYTICS, SOCIAL, FUNCTIONAL)),
    ("analytics%2Esocial", grants(ANALYTICS, SOCIAL)),
    ("Analytics. ADVERTISING", grants(ANALYTICS, ADVERTISING)),
    ('"analytics.social"', grants(ANALYTICS, SOCIAL)),
    ("analytics.tracking.chat", grants(ANALYTICS)),
    ("", grants()),
    ("none", grants()),
    ("essential", grants()),
    ("%zz", MALFORMED),
    ("analytics%", MALFORMED),
    ("%ff", MALFORMED),
    ("analytics." * 500, OVERSIZED),
    # banner.js: categories, then ~policy version~unix seconds~consent id (ignored here)
    ("analytics.social~3~1796300000~Hk3J9dPq2LmN8xYz", grants(ANALYTICS, SOCIAL)),
    ("~3~1796300000~Hk3J9dPq2LmN8xYz", grants()),
    ("social~", grants(SOCIAL)),
    ("analytics%7E3%7E1796300000%7Esocial", grants(ANALYTICS)),
]


@pytest.mark.parametrize(("value", "expected"), NATIVE)
def test_read_native(value: str, expected: Reading) -> None:
    assert choice(read_native(value)) == expected


ONETRUST = [
    (ONETRUST_SURVEY, grants(ANALYTICS, ADVERTISING)),
    ("interactionCount=1&groups=C0001%3A1%2CC0002%3A0%2CC0003%3A0%2CC0004%3A0%2CC0005%3A0", grants()),
    ("interactionCount=3&groups=C0001:1,C0003:1,C0005:0", grants(FUNCTIONAL)),
    ("interactionCount=1&groups=C0001:1,C0002:1,C0003:1,C0004:1,C0005:1", grants(*ALL)),
    ("interactionCount=1&groups=", grants()),
    ("interactionCount=1&groups=C0042%3A1%2CSTACK42%3A1%2CBG12%3A1", grants()),
    ("interactionCount=0&groups=C0001:1,C0002:1,C0004:1", UNDECIDED),
    ("isGpcEnabled=0&groups=C0002%3A1", UNDECIDED),
    ("", UNDECIDED),
    ("interactionCount=two&groups=C0002:1", MALFORMED),
    ("interactionCount=1&groups=C0002", MALFORMED),
    ("interactionCount=1&groups=C0002:2", MALFORMED),
    ("interactionCount=1&groups=:1", MALFORMED),
    ("interactionCount=1&groups=C0002:1,C0002:0", MALFORMED),
    ("interactionCount=1", MALFORMED),
    ("interactionCount=1&groups=C0002%3", MALFORMED),
    ("interactionCount=1&interactionCount=2&groups=C0002:1", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), ONETRUST)
def test_read_onetrust(value: str, expected: Reading) -> None:
    assert choice(read_onetrust(value)) == expected


def test_onetrust_site_specific_groups_are_mappable() -> None:
    settings = ConsentSettings(onetrust_groups={"C0001": frozenset(), "C0042": frozenset({ANALYTICS})})
    assert choice(read_onetrust("interactionCount=1&groups=C0042:1,C0002:1", settings)) == grants(ANALYTICS)


COOKIEBOT = [
    (COOKIEBOT_SURVEY, grants()),
    (
        _cookiebot(stamp="'abc'", necessary="true", preferences="true", statistics="true", marketing="true"),
        grants(*ALL),
    ),
    (
        _cookiebot(necessary="true", preferences="false", statistics="true", marketing="false"),
        grants(ANALYTICS),
    ),
    ('{ necessary: true, statistics: true, method: "explicit" }', grants(ANALYTICS)),
    (_cookiebot(stamp="'-1'", necessary="true", statistics="true", marketing="true"), UNDECIDED),
    (_cookiebot(necessary="true", statistics="true", method="'implied'"), UNDECIDED),
    ("-1", UNDECIDED),
    ("{necessary:true}", grants()),
    ("{}", MALFORMED),
    ("{stamp:'x',ver:1}", MALFORMED),
    ("{necessary:true,statistics:'yes'}", MALFORMED),
    ("{necessary:true,statistics:1}", MALFORMED),
    ("{statistics:true", MALFORMED),
    ("{statistics:true,statistics:false}", MALFORMED),
    ("{statistics:true;marketing:true}", MALFORMED),
    ("{statistics:true,}", MALFORMED),
    ("%27", MALFORMED),
    ("0", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), COOKIEBOT)
def test_read_cookiebot(value: str, expected: Reading) -> None:
    assert choice(read_cookiebot(value)) == expected


KLARO = [
    (KLARO_SURVEY, grants(ANALYTICS)),
    (quote(json.dumps({"googleAnalytics": False, "youtube": False, "facebookPixel": False})), grants()),
    (quote(json.dumps({"youtube": True, "facebookPixel": True, "hotjar": True})), grants(*ALL[1:])),
    (quote(json.dumps({"googleAnalytics": True, "matomo": False})), grants()),
    ('{"youtube":true}', grants(SOCIAL)),
    ('{"someCustomService":true}', grants()),
    ("{}", grants()),
    ('{"youtube":"yes"}', MALFORMED),
    ('{"youtube":1}', MALFORMED),
    ('{"youtube":true,"youtube":false}', MALFORMED),
    ("[true]", MALFORMED),
    ("%7B", MALFORMED),
    ("[" * 2000, MALFORMED),
    ("null", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), KLARO)
def test_read_klaro(value: str, expected: Reading) -> None:
    assert choice(read_klaro(value)) == expected


COOKIECONSENT = [
    (CC_SURVEY, grants(ANALYTICS)),
    ('{"level":["necessary","marketing"],"revision":0,"data":null,"rfc_cookie":false}', grants(ADVERTISING)),
    (quote(json.dumps({"categories": ["necessary"]})), grants()),
    (
        quote(json.dumps({"categories": ["necessary", "functionality", "analytics", "targeting", "social"]})),
        grants(*ALL),
    ),
    (quote(json.dumps({"categories": ["necessary", "Analytics", "unknown"]})), grants(ANALYTICS)),
    ('{"categories":"analytics"}', MALFORMED),
    ('{"categories":[1]}', MALFORMED),
    ('{"revision":0}', MALFORMED),
    ("null", MALFORMED),
    ("%7B%22categories", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), COOKIECONSENT)
def test_read_cookieconsent(value: str, expected: Reading) -> None:
    assert choice(read_cookieconsent(value)) == expected


TARTEAUCITRON = [
    ("!gtag=true!youtube=false!facebookpixel=wait", grants(ANALYTICS)),
    ("!gtag=true!youtube=true!facebookpixel=true!intercom=true", grants(*ALL)),
    ("!gtag=false!youtube=false", grants()),
    ("!gtag=true!matomo=false", grants()),
    ("!id=abc123!gtag=true", grants(ANALYTICS)),
    ("!someservice=true", grants()),
    ("!gtag=wait!youtube=wait", UNDECIDED),
    ("!youtube=engage!gtag=wait", UNDECIDED),
    ("", UNDECIDED),
    ("gtag=true", MALFORMED),
    ("!gtag=maybe", MALFORMED),
    ("!gtag", MALFORMED),
    ("!=true", MALFORMED),
    ("!gtag=true!gtag=false", MALFORMED),
    ("!gtag=true!", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), TARTEAUCITRON)
def test_read_tarteaucitron(value: str, expected: Reading) -> None:
    assert choice(read_tarteaucitron(value)) == expected


COMPLIANZ: list[tuple[dict[str, str], Reading]] = [
    (
        {"functional": "allow", "preferences": "deny", "statistics": "allow", "marketing": "deny"},
        grants(ANALYTICS),
    ),
    ({"functional": "allow", "statistics": "allow", "marketing": "allow"}, grants(*ALL)),
    ({"statistics": "deny", "marketing": "deny"}, grants()),
    ({"marketing": "allow"}, grants(ADVERTISING, SOCIAL)),
    ({}, ABSENT),
    ({"statistics": "yes"}, MALFORMED),
    ({"statistics": "allow", "marketing": ""}, MALFORMED),
    ({"statistics": "x" * 5000}, OVERSIZED),
]


@pytest.mark.parametrize(("values", "expected"), COMPLIANZ)
def test_read_complianz(values: dict[str, str], expected: Reading) -> None:
    assert choice(read_complianz(values)) == expected


COOKIEYES = [
    (COOKIEYES_SURVEY, grants()),
    (
        "consentid:A,consent:yes,action:yes,necessary:yes,functional:yes,analytics:yes,performance:yes,"
        "advertisement:yes,other:yes",
        grants(FUNCTIONAL, ANALYTICS, ADVERTISING),
    ),
    ("consentid:A,consent:yes,action:yes,necessary:yes,analytics:yes,performance:yes", grants(ANALYTICS)),
    ("consentid:A,consent:yes,action:yes,analytics:yes,performance:no", grants()),
    ("consentid:A,consent:no,action:,necessary:yes,functional:no,analytics:no", UNDECIDED),
    ("consentid:A,consent:yes,necessary:yes,analytics:yes", MALFORMED),
    ("consentid:A,action:yes,analytics:maybe", MALFORMED),
    ("action:yes,analytics:yes,analytics:no", MALFORMED),
    ("garbage", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), COOKIEYES)
def test_read_cookieyes(value: str, expected: Reading) -> None:
    assert choice(read_cookieyes(value)) == expected


DIDOMI: list[tuple[str, str | None, Reading]] = [
    (DIDOMI_SURVEY_TOKEN, TC_DIDOMI_SAMPLE, grants()),
    (b64json({"purposes": {}, "vendors": {}}), TC_ALL_PURPOSES, grants(ANALYTICS, ADVERTISING)),
    (b64json({"vendors": {"disabled": ["c:hotjar"]}}), TC_ALL_PURPOSES, grants(ADVERTISING)),
    (b64json({"purposes": {"disabled": ["market_research"]}}), TC_ALL_PURPOSES, grants(ADVERTISING)),
    (b64json({"purposes": {"disabled": ["cookies"]}}), TC_ALL_PURPOSES, grants()),
    (b64json({"purposes": {"enabled": ["cookies"]}}), TC_1_8_9_10, grants(ANALYTICS)),
    (b64json({"purposes": {"enabled": ["market_research", "select_basic_ads"]}}), None, grants(*ALL[1:3])),
    (
        b64json({"purposes": {"enabled": ["market_research"], "disabled": ["improve_products"]}}),
        None,
        grants(),
    ),
    (b64json({"purposes": {"enabled": ["geolocation_data"]}}), None, grants()),
    (b64json({"vendors": {"enabled": ["google"]}}).rstrip("="), None, grants()),
    (quote(b64json({"purposes": {"enabled": ["market_research"]}})), None, grants(ANALYTICS)),
    ("!!!", None, MALFORMED),
    (b64json({"purposes": {"enabled": "cookies"}}), None, MALFORMED),
    (b64json({"purposes": ["cookies"]}), None, MALFORMED),
    (b64json([1, 2]), None, MALFORMED),
    (base64.b64encode(b"not json").decode(), None, MALFORMED),
    (base64.b64encode(b"\xff\xfe").decode(), None, MALFORMED),
    (base64.urlsafe_b64encode(b'{"a":">>>?"}').decode(), None, MALFORMED),
    ("QUJD" + "R", None, MALFORMED),
    (b64json({}), "garbage*", MALFORMED),
    (b64json({}), TC_VERSION_1, MALFORMED),
]


@pytest.mark.parametrize(("token", "tc_string", "expected"), DIDOMI)
def test_read_didomi(token: str, tc_string: str | None, expected: Reading) -> None:
    assert choice(read_didomi(token, tc_string)) == expected


TCF = [
    (TC_ALL_PURPOSES, grants(ANALYTICS, ADVERTISING)),
    (TC_1_8_9_10, grants(ANALYTICS)),
    (TC_1_TO_9, grants(ADVERTISING)),
    (TC_2_TO_10, grants()),
    (TC_LI_ONLY, grants()),
    (TC_NONE, grants()),
    (TC_DIDOMI_SAMPLE, grants()),
    (f'"{TC_ALL_PURPOSES}"', grants(ANALYTICS, ADVERTISING)),
    (quote(TC_ALL_PURPOSES + "=", safe=""), grants(ANALYTICS, ADVERTISING)),
    ("", MALFORMED),
    (TC_VERSION_1, MALFORMED),
    (TC_ALL_PURPOSES[:20], MALFORMED),
    (TC_ALL_PURPOSES.replace("_", "/"), MALFORMED),
    (TC_ALL_PURPOSES + "%", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), TCF)
def test_read_tcf(value: str, expected: Reading) -> None:
    assert choice(read_tcf(value)) == expected


@pytest.mark.parametrize(
    ("purposes", "tcf_purposes", "expected"),
    [
        ({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, None, {ADVERTISING, ANALYTICS}),
        ({2, 3, 4, 5, 6, 7, 8, 9, 10}, None, set()),
        ({1, 2, 3, 4, 5, 6}, None, set()),
        ({1, 11}, {11: frozenset({FUNCTIONAL})}, {FUNCTIONAL}),
        ({1, 11}, {11: frozenset({ESSENTIAL})}, set()),
    ],
)
def test_categories_from_purposes(
    purposes: set[int], tcf_purposes: Mapping[int, frozenset[str]] | None, expected: set[str]
) -> None:
    settings = DEFAULT_SETTINGS if tcf_purposes is None else ConsentSettings(tcf_purposes=tcf_purposes)
    assert categories_from_purposes(purposes, settings) == expected


OSANO = [
    ("allow", grants(*ALL)),
    ("deny", grants()),
    ("dismiss", UNDECIDED),
    ("ALLOW", MALFORMED),
    ("", MALFORMED),
]


@pytest.mark.parametrize(("value", "expected"), OSANO)
def test_read_osano(value: str, expected: Reading) -> None:
    assert choice(read_osano(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("1", True), (" 1\t", True), ("0", False), ("", False), ("true", False), ("1, 1", False)],
)
def test_read_gpc(value: str | None, expected: bool) -> None:
    assert read_gpc(value) is expected


# --- resolution ---------------------------------------------------------------------

DEFAULT = DEFAULT_SETTINGS
OT_GRANT_ALL = quote("interactionCount=1&groups=C0001:1,C0002:1,C0003:1,C0004:1,C0005:1", safe="=&")
OT_UNDECIDED = "interactionCount=0&groups=C0001:1,C0002:1"


def state(header: str | None, gpc: str | None = None, settings: ConsentSettings = DEFAULT) -> ConsentState:
    return read_consent(header, gpc, settings)


RESOLUTION: list[tuple[str | None, str | None, ConsentSettings, set[str], bool, str, str]] = [
    # header, Sec-GPC, settings -> granted (besides essential), decided, source, reason
    (None, None, DEFAULT_SETTINGS, set(), False, "none", "missing"),
    ("", None, DEFAULT_SETTINGS, set(), False, "none", "missing"),
    ("_ga=GA1.2.3; sid=abc", None, DEFAULT_SETTINGS, set(), False, "none", "missing"),
    ("sid=1", None, ConsentSettings(undecided=frozenset({ANALYTICS})), {ANALYTICS}, False, "none", "missing"),
    ("tg_consent=analytics.social", None, DEFAULT_SETTINGS, {ANALYTICS, SOCIAL}, True, "tag-gate", "ok"),
    ("tg_consent=", None, DEFAULT_SETTINGS, set(), True, "tag-gate", "ok"),
    (
        f"OptanonConsent={OT_GRANT_ALL}; tg_consent=analytics",
        None,
        DEFAULT_SETTINGS,
        {ANALYTICS},
        True,
        "tag-gate",
        "ok",
    ),
    # source order no longer lets an undated grant outvote a refusal (test_consent_combine.py)
    (
        f"OptanonConsent={OT_GRANT_ALL}; tg_consent=analytics",
        None,
        ConsentSettings(sources=("onetrust", "tag-gate")),
        {ANALYTICS},
        True,
        "tag-gate",
        "ok",
    ),
    (
        f"OptanonConsent={OT_UNDECIDED}; cookieconsent_status=allow",
        None,
        DEFAULT_SETTINGS,
        set(ALL),
        True,
        "osano",
        "ok",
    ),
    (f"OptanonConsent={OT_UNDECIDED}", None, DEFAULT_SETTINGS, set(), False, "default", "ok"),
    (
        f"OptanonConsent={OT_UNDECIDED}",
        None,
        ConsentSettings(undecided=frozenset({FUNCTIONAL})),
        {FUNCTIONAL},
        False,
        "default",
        "ok",
    ),
    # a broken higher-priority source decides "essential only", whatever comes after
    (
        f"tg_consent=%zz; OptanonConsent={OT_GRANT_ALL}",
        None,
        DEFAULT_SETTINGS,
        set(),
        False,
        "tag-gate",
        "malformed",
    ),
    (
        f"OptanonConsent={OT_GRANT_ALL}; OptanonConsent=interactionCount=1&groups=",
        None,
        DEFAULT_SETTINGS,
        set(),
        False,
        "onetrust",
        "conflict",
    ),
    (
        f"OptanonConsent={OT_GRANT_ALL}; OptanonConsent={OT_GRANT_ALL}",
        None,
        DEFAULT_SETTINGS,
        set(ALL),
        True,
        "onetrust",
        "ok",
    ),
    (
        f"tg_consent={'analytics.' * 500}; OptanonConsent={OT_GRANT_ALL}",
        None,
        DEFAULT_SETTINGS,
        set(),
        False,
        "tag-gate",
        "oversized",
    ),
    (
        f"cmplz_statistics=allow; cmplz_statistics=deny; euconsent-v2={TC_ALL_PURPOSES}",
        None,
        DEFAULT_SETTINGS,
        set(),
        False,
        "complianz",
        "conflict",
    ),
    (
        f"didomi_token={b64json({})}; euconsent-v2={TC_ALL_PURPOSES}; euconsent-v2={TC_NONE}",
        None,
        DEFAULT_SETTINGS,
        set(),
        False,
        "didomi",
        "conflict",
    ),
    (f"euconsent-v2={TC_ALL_PURPOSES}", None, DEFAULT_SETTINGS, {ANALYTICS, ADVERTISING}, True, "tcf", "ok"),
    (
        f"didomi_token={b64json({'vendors': {'disabled': ['google']}})}; euconsent-v2={TC_ALL_PURPOSES}",
        None,
        DEFAULT_SETTINGS,
        {ANALYTICS},
        True,
        "didomi",
        "ok",
    ),
    ("cookieconsent_status=dismiss", None, DEFAULT_SETTINGS, set(), False, "default", "ok"),
    # sources not listed are not read
    ("tg_consent=analytics", None, ConsentSettings(sources=("tcf",)), set(), False, "none", "missing"),
    (
        "tg_consent=analytics",
        None,
        ConsentSettings(sources=("nonsense", "tag-gate")),
        {ANALYTICS},
        True,
        "tag-gate",
        "ok",
    ),
    # GPC removes gpc_refuses whatever the cookies say, and the undecided defaults too
    ("tg_consent=advertising.analytics", "1", DEFAULT_SETTINGS, {ANALYTICS}, True, "tag-gate", "ok"),
    (
        "tg_consent=advertising.analytics",
        "0",
        DEFAULT_SETTINGS,
        {ADVERTISING, ANALYTICS},
        True,
        "tag-gate",
        "ok",
    ),
    (
        "tg_consent=advertising.social",
        "1",
        ConsentSettings(gpc_refuses=frozenset({ADVERTISING, SOCIAL})),
        set(),
        True,
        "tag-gate",
        "ok",
    ),
    (
        None,
        "1",
        ConsentSettings(undecided=frozenset({ADVERTISING, ANALYTICS})),
        {ANALYTICS},
        False,
        "none",
        "missing",
    ),
]


@pytest.mark.parametrize(("header", "gpc", "settings", "granted", "decided", "source", "reason"), RESOLUTION)
def test_resolution(
    header: str | None,
    gpc: str | None,
    settings: ConsentSettings,
    granted: set[str],
    decided: bool,
    source: str,
    reason: str,
) -> None:
    result = state(header, gpc, settings)
    assert (result.granted, result.decided, result.source, result.reason) == (
        frozenset(granted | {ESSENTIAL}),
        decided,
        source,
        reason,
    )
    assert result.gpc is (gpc == "1")
    assert result.key == consent_key(result.granted, result.gpc, settings)


@pytest.mark.parametrize(
    "header",
    [
        "pad=" + "x" * MAX_COOKIE_HEADER_BYTES + "; tg_consent=analytics",
        "tg_consent=analytics; pad=" + "é" * (MAX_COOKIE_HEADER_BYTES // 2),
    ],
    ids=["ascii", "multi-byte"],
)
def test_oversized_cookie_header_is_not_read(header: str) -> None:
    result = state(header)
    assert (result.granted, result.source, result.reason) == (frozenset({ESSENTIAL}), "none", "oversized")


def test_cookie_header_at_the_cap_is_read() -> None:
    header = "tg_consent=analytics; pad="
    header += "x" * (MAX_COOKIE_HEADER_BYTES - len(header))
    assert state(header).granted == {ESSENTIAL, ANALYTICS}


def test_every_source_is_reachable_and_named() -> None:
    headers = {
        "tag-gate": "tg_consent=analytics",
        "onetrust": f"OptanonConsent={OT_GRANT_ALL}",
        "cookiebot": "CookieConsent={necessary:true,statistics:true}",
        "klaro": 'klaro={"matomo":true}',
        "cookieconsent": 'cc_cookie={"categories":["analytics"]}',
        "tarteaucitron": "tarteaucitron=!gtag=true",
        "complianz": "cmplz_statistics=allow",
        "cookieyes": "cookieyes-consent=action:yes,analytics:yes",
        "didomi": f"didomi_token={b64json({})}; euconsent-v2={TC_1_8_9_10}",
        "osano": "cookieconsent_status=allow",
        "tcf": f"euconsent-v2={TC_1_8_9_10}",
    }
    assert set(headers) == set(SOURCES)
    for source, header in headers.items():
        result = state(header)
        assert (result.source, result.decided, ANALYTICS in result.granted) == (source, True, True), source
        assert set(source_cookie_names(source)) >= {p.split("=", 1)[0] for p in header.split("; ")}
    assert source_cookie_names("nonsense") == ()


def test_custom_categories() -> None:
    settings = ConsentSettings(categories=frozenset(BUILTIN_CATEGORIES) | {"chat", "video"})
    result = state("tg_consent=analytics.chat.unknown", None, settings)
    assert result.granted == {ESSENTIAL, ANALYTICS, "chat"}
    assert result.allows("chat") and not result.allows("video") and result.allows(ESSENTIAL)
    assert result.key == "f0a1d0s0g0x" + hashlib.sha256(b"chat").hexdigest()[:6]
    # unknown names in cookies are ignored with the built-in settings
    assert state("tg_consent=analytics.chat").granted == {ESSENTIAL, ANALYTICS}


# --- keys and reports ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "gpc", "key"),
    [
        (set(), False, "f0a0d0s0g0"),
        ({ANALYTICS, SOCIAL}, False, "f0a1d0s1g0"),
        (set(ALL), True, "f1a1d1s1g1"),
        ({FUNCTIONAL, ADVERTISING}, True, "f1a0d1s0g1"),
    ],
)
def test_consent_key(granted: set[str], gpc: bool, key: str) -> None:
    assert consent_key(granted | {ESSENTIAL}, gpc) == key


def test_consent_key_with_custom_categories_is_fixed_length_and_hashes_names() -> None:
    settings = ConsentSettings(categories=frozenset(BUILTIN_CATEGORIES) | {"chat", "maps"})
    none = consent_key({ESSENTIAL}, False, settings)
    both = consent_key({ESSENTIAL, "maps", "chat"}, False, settings)
    assert none == "f0a0d0s0g0x" + hashlib.sha256(b"").hexdigest()[:6]
    assert both == "f0a0d0s0g0x" + hashlib.sha256(b"chat,maps").hexdigest()[:6]
    assert len(none) == len(both) == 17


def test_consent_report_shape() -> None:
    report = consent_report(state("tg_consent=social.analytics", "1"))
    assert report == {
        "granted": [ANALYTICS, ESSENTIAL, SOCIAL],
        "decided": True,
        "source": "tag-gate",
        "gpc": True,
        "key": "f0a1d0s1g1",
    }
    json.dumps(report)


def test_format_consent() -> None:
    text = format_consent(state("tg_consent=social.analytics"))
    assert text.splitlines() == [
        "granted: essential, analytics, social",
        "refused: functional, advertising",
        "source:  tag-gate (decided)",
        "gpc:     no",
        "key:     f0a1d0s1g0",
        "reason:  ok",
    ]
    assert "reason:  malformed" in format_consent(state("tg_consent=%"))
    assert "refused: -" in format_consent(state("tg_consent=functional.analytics.advertising.social"))


# --- settings validation --------------------------------------------------------------


def test_default_settings_are_valid() -> None:
    assert validate_settings(DEFAULT_SETTINGS) == []
    assert validate_settings(ConsentSettings(categories=frozenset(BUILTIN_CATEGORIES) | {"chat"})) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"categories": frozenset(BUILTIN_CATEGORIES) | {"Chat"}},
            "categories: 'Chat' is not a valid category name",
        ),
        (
            {"categories": frozenset({ESSENTIAL, ANALYTICS})},
            "categories: built-in category 'functional' is missing",
        ),
        ({"sources": ("tag-gate", "usercentrics")}, "sources[1]: unknown source 'usercentrics'"),
        ({"sources": ("tcf", "tcf")}, "sources[1]: 'tcf' listed twice"),
        ({"undecided": frozenset({"chat"})}, "undecided: unknown category 'chat'"),
        ({"gpc_refuses": frozenset({ESSENTIAL})}, "gpc_refuses: 'essential' cannot be refused"),
        ({"osano_allow": frozenset({"all"})}, "osano_allow: unknown category 'all'"),
        ({"cookie_name": "tg consent"}, "cookie_name: 'tg consent' is not a valid cookie name"),
        ({"klaro_cookie": ""}, "klaro_cookie: '' is not a valid cookie name"),
        ({"max_cookie_bytes": 0}, "max_cookie_bytes: 0 must be at least 1"),
        (
            {"onetrust_groups": {"C0002": frozenset({"stats"})}},
            "onetrust_groups['C0002']: unknown category 'stats'",
        ),
        (
            {"klaro_services": {"Matomo": ANALYTICS}},
            "klaro_services['Matomo']: keys are matched in lower case",
        ),
        (
            {"tarteaucitron_services": {"gtag": "stats"}},
            "tarteaucitron_services['gtag']: unknown category 'stats'",
        ),
        (
            {"tcf_purposes": {25: frozenset({ANALYTICS})}},
            "tcf_purposes[25]: TCF purposes are numbered 1 to 24",
        ),
        ({"tcf_purposes": {8: frozenset({"stats"})}}, "tcf_purposes[8]: unknown category 'stats'"),
    ],
)
def test_validate_settings_reports_problems(changes: dict[str, Any], problem: str) -> None:
    problems = validate_settings(ConsentSettings(**changes))
    assert any(p.startswith(problem) for p in problems), problems


# --- properties -----------------------------------------------------------------------

_GRANT_WORDS: dict[str, tuple[str, ...]] = {
    "onetrust": ("1",),
    "cookiebot": ("true",),
    "klaro": ("true",),
    "tarteaucitron": ("true",),
    "complianz": ("allow",),
    "cookieyes": ("yes",),
    "osano": ("allow",),
}


def could_grant(source: str, value: str, category: str) -> bool:
    """A deliberately loose oracle: could this cookie value have granted `category`?"""
    text = unquote(value, errors="replace").lower()
    if source == "tag-gate":
        return category in text
    if source == "cookieconsent":
        return any(k in text for k, v in DEFAULT_SETTINGS.cookieconsent_categories.items() if category in v)
    if source in ("tcf", "didomi"):
        try:
            tc = parse_tc_string(unquote(value.strip('"')))
        except ValueError:
            return source == "didomi"
        return category in categories_from_purposes(tc.purposes_consent, DEFAULT_SETTINGS)
    return any(word in text for word in _GRANT_WORDS[source])


_SINGLE_READERS: dict[str, Callable[[str, ConsentSettings], Reading]] = {
    "tag-gate": read_native,
    "onetrust": read_onetrust,
    "cookiebot": read_cookiebot,
    "klaro": read_klaro,
    "cookieconsent": read_cookieconsent,
    "tarteaucitron": read_tarteaucitron,
    "cookieyes": read_cookieyes,
    "osano": read_osano,
    "tcf": read_tcf,
}

garbage = (
    st.text()
    | st.binary().map(lambda b: b.decode("latin-1"))
    | st.text(alphabet="{}[]\":,!=%.&;_-+/ 019ACFQtruefalsyeswdimkgo'")
    | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=30)
)


@pytest.mark.parametrize("source", sorted(_SINGLE_READERS))
@given(value=garbage)
def test_readers_never_raise_and_never_grant_from_garbage(source: str, value: str) -> None:
    reading = _SINGLE_READERS[source](value, DEFAULT_SETTINGS)
    assert reading.reason in REASONS
    assert ESSENTIAL not in reading.granted
    assert not reading.granted or reading.decided
    for category in reading.granted:
        assert could_grant(source, value, category), (source, value, category)


@given(values=st.dictionaries(st.sampled_from(["functional", "statistics", "marketing", "x"]), garbage))
def test_complianz_never_raises_and_never_grants_from_garbage(values: dict[str, str]) -> None:
    reading = read_complianz(values)
    assert reading.reason in REASONS
    assert not reading.granted or all(v == "allow" or v == "deny" for v in values.values() if v)


@given(token=garbage, tc_string=st.none() | garbage)
def test_didomi_never_raises_and_never_grants_from_garbage(token: str, tc_string: str | None) -> None:
    reading = read_didomi(token, tc_string)
    assert reading.reason in REASONS
    if tc_string is not None:
        assert all(could_grant("tcf", tc_string, category) for category in reading.granted)


_CONSENT_COOKIES = sorted(
    {name for source in SOURCES for name in source_cookie_names(source)} | {"cmplz_x", "_ga", "sid", ""}
)


@given(
    pairs=st.lists(st.tuples(st.sampled_from(_CONSENT_COOKIES), garbage), max_size=6),
    noise=st.text(max_size=40),
    gpc=st.none() | st.sampled_from(["1", "0", " 1", "true"]) | st.text(max_size=3),
)
def test_whole_header_never_raises_and_holds_invariants(
    pairs: list[tuple[str, str]], noise: str, gpc: str | None
) -> None:
    header = "; ".join(f"{name}={value}" for name, value in pairs) + noise
    result = read_consent(header, gpc)
    assert ESSENTIAL in result.granted
    assert result.reason in REASONS
    assert result.source in SOURCES or result.source in ("none", "default")
    assert re.fullmatch(r"f[01]a[01]d[01]s[01]g[01]", result.key)
    if result.gpc:
        assert ADVERTISING not in result.granted
    if result.reason != "ok":
        assert result.granted == {ESSENTIAL}
    if not result.decided:
        assert result.granted == {ESSENTIAL}  # the default `undecided` is empty


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=60))
def test_header_of_random_text_never_raises(header: str) -> None:
    result = read_consent(header, None)
    assert result.reason in REASONS and ESSENTIAL in result.granted


@given(
    chosen=st.lists(st.sampled_from([*ALL, ESSENTIAL, "chat", "Tracking"])),
    separator=st.sampled_from([".", ",", "|", "%2E", "%2C"]),
    upper=st.booleans(),
    quoted=st.booleans(),
)
def test_native_cookie_grants_exactly_what_it_names(
    chosen: list[str], separator: str, upper: bool, quoted: bool
) -> None:
    value = separator.join(name.upper() if upper else name for name in chosen)
    if quoted:
        value = f'"{value}"'
    assert choice(read_native(value)) == grants(*(set(chosen) & set(ALL)))


def test_pure_modules_do_not_import_io_libraries() -> None:
    code = (
        "import sys, proxy.core.consent, proxy.core.tcf; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'lolhtml')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- proxy/data/public/bridge.js ---------------------------------------------------------------

BRIDGE = Path(proxy.__file__).parent / "data" / "public" / "bridge.js"


def test_bridge_script_is_small_strict_and_eval_free() -> None:
    source = BRIDGE.read_text("utf-8")
    assert len(source.encode()) < 4096
    assert "'use strict';" in source
    assert not re.search(r"\beval\b|\bFunction\(|setTimeout\(\s*['\"]", source)


# Runs bridge.js in a node `vm` context with a fake window, document.cookie, localStorage
# and CMP objects, then prints the final tg_consent value and every cookie write.
_BRIDGE_HARNESS = r"""
'use strict';
const fs = require('fs');
const vm = require('vm');
const source = fs.readFileSync(process.argv[2], 'utf8');

function env(protocol) {
  const target = new EventTarget();
  const writes = [];
  let jar = null;
  const storage = {};
  const ctx = {
    location: { protocol },
    localStorage: storage,
    document: {
      readyState: 'complete',
      currentScript: null,
      get cookie() { return jar === null ? 'other=1' : 'other=1; tg_consent=' + jar; },
      set cookie(line) {
        writes.push(line);
        const m = line.match(/^tg_consent=([^;]*);.*max-age=(\d+)/);
        jar = m[2] === '0' ? null : m[1];
      },
    },
    addEventListener: target.addEventListener.bind(target),
    Promise, Object, Array, Set, String, RegExp,
  };
  ctx.window = ctx;
  const fire = (name, detail) => target.dispatchEvent(new CustomEvent(name, { detail }));
  return { ctx, fire, storage, writes, cookie: () => jar };
}

const tick = () => new Promise((r) => setImmediate(r));

const scenarios = {
  async uc_event_explicit(e) {
    e.run();
    e.fire('ucEvent', { event: 'consent_status', type: 'explicit',
      ucCategory: { essential: true, functional: false, marketing: true, statistics: null, constructor: true } });
  },
  async uc_event_implicit(e) {
    e.run();
    e.fire('ucEvent', { event: 'consent_status', type: 'explicit', ucCategory: { statistics: true } });
    e.fire('ucEvent', { event: 'consent_status', type: 'implicit', ucCategory: { statistics: true } });
  },
  async uc_v3_mixed(e) {
    e.ctx.__ucCmp = { getConsentDetails: async () => ({ services: {
      a: { category: 'statistics', consent: { given: true, type: 'EXPLICIT' } },
      b: { category: 'marketing', consent: { given: true, type: 'IMPLICIT' } },
      c: { category: 'functional', consent: { given: true, type: 'EXPLICIT' } },
      d: { category: 'functional', consent: { given: false, type: 'EXPLICIT' } } } }) };
    e.run();
  },
  async uc_v3_implicit_only(e) {
    e.ctx.__ucCmp = { getConsentDetails: async () => ({ services: {
      a: { category: 'statistics', consent: { given: true, type: 'IMPLICIT' } } } }) };
    e.run();
  },
  async uc_v2_pull(e) {
    e.storage.uc_user_interaction = 'true';
    e.ctx.UC_UI = { isInitialized: () => true, getServicesBaseInfo: () => [
      { categorySlug: 'statistics', consent: { status: true } },
      { categorySlug: 'marketing', consent: { status: true } },
      { categorySlug: 'marketing', consent: { status: false } },
      { categorySlug: 'preferences', consent: { status: true } }] };
    e.run();
  },
  async uc_v2_no_interaction(e) {
    e.ctx.UC_UI = { isInitialized: () => true, getServicesBaseInfo: () => [
      { categorySlug: 'statistics', consent: { status: true } }] };
    e.run();
  },
  async uc_v2_accept_button(e) {
    let status = false;
    e.ctx.UC_UI = { isInitialized: () => true, getServicesBaseInfo: async () => [
      { categorySlug: 'statistics', consent: { status } }] };
    e.run();
    await tick();
    status = true;
    e.fire('UC_UI_CMP_EVENT', { source: 'FIRST_LAYER', type: 'ACCEPT_ALL' });
  },
  async osano_opt_out(e) {
    e.ctx.Osano = { cm: osano({ ESSENTIAL: 'ACCEPT', ANALYTICS: 'ACCEPT', MARKETING: 'ACCEPT', OPT_OUT: 'ACCEPT' }) };
    e.run();
  },
  async osano_all(e) {
    e.ctx.Osano = { cm: osano({ ESSENTIAL: 'ACCEPT', ANALYTICS: 'ACCEPT', MARKETING: 'ACCEPT',
      PERSONALIZATION: 'DENY', STORAGE: 'ACCEPT', OPT_OUT: 'DENY' }) };
    e.run();
  },
  async osano_undecided(e) {
    e.ctx.Osano = { cm: osano(undefined) };
    e.run();
  },
  async osano_saved_later(e) {
    const cm = osano(undefined);
    e.ctx.Osano = { cm };
    e.run();
    cm.consent = { ANALYTICS: 'DENY', MARKETING: 'ACCEPT' };
    cm.emit('osano-cm-consent-saved', cm.consent);
  },
  async nothing(e) { e.run(); },
};

function osano(initial) {
  const listeners = {};
  const cm = {
    consent: initial,
    getConsent() { return cm.consent; },
    addEventListener(name, f) {
      (listeners[name] = listeners[name] || []).push(f);
      if (name === 'osano-cm-initialized') f(cm.consent);
    },
    emit(name, arg) { (listeners[name] || []).forEach((f) => f(arg)); },
  };
  return cm;
}

(async () => {
  const out = {};
  for (const [name, play] of Object.entries(scenarios)) {
    for (const protocol of ['https:', 'http:']) {
      const e = env(protocol);
      e.run = () => vm.runInNewContext(source, e.ctx);
      await play(e);
      for (let i = 0; i < 5; i++) await tick();
      out[name + ' ' + protocol] = { cookie: e.cookie(), writes: e.writes };
    }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((err) => { console.error(err); process.exit(1); });
"""

BRIDGE_SCENARIOS = {
    # Usercentrics v2 window event: null (mixed) and false refuse; unknown keys ignored
    "uc_event_explicit": "advertising.social",
    # an implicit consent_status after an explicit one removes the cookie
    "uc_event_implicit": None,
    # v3 getConsentDetails: IMPLICIT grants do not count; one refused service refuses
    "uc_v3_mixed": "analytics",
    "uc_v3_implicit_only": None,
    # v2 getServicesBaseInfo after an interaction; refusal wins inside "marketing"
    "uc_v2_pull": "analytics.functional",
    "uc_v2_no_interaction": None,
    # an ACCEPT_ALL button event counts as a choice before UC stores it
    "uc_v2_accept_button": "analytics",
    # Osano OPT_OUT=ACCEPT refuses advertising even with MARKETING accepted
    "osano_opt_out": "analytics.social",
    "osano_all": "advertising.analytics.social",
    "osano_undecided": None,
    "osano_saved_later": "advertising.social",
    "nothing": None,
}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_bridge_script_mirrors_cmp_choices(tmp_path: Path) -> None:
    harness = tmp_path / "harness.js"
    harness.write_text(_BRIDGE_HARNESS, "utf-8")
    run = subprocess.run(["node", str(harness), str(BRIDGE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    for protocol in ("https:", "http:"):
        got = {name: results[f"{name} {protocol}"]["cookie"] for name in BRIDGE_SCENARIOS}
        assert got == BRIDGE_SCENARIOS
        for name in BRIDGE_SCENARIOS:
            for line in results[f"{name} {protocol}"]["writes"]:
                assert line.startswith("tg_consent=") and "; path=/; " in line and "; SameSite=Lax" in line
                assert line.endswith("; Secure") is (protocol == "https:")
                assert "max-age=31536000" in line or "max-age=0" in line
    for value in filter(None, BRIDGE_SCENARIOS.values()):
        assert choice(read_native(value)) == grants(*value.split("."))


def test_a_stated_consent_grants_the_known_categories_named_with_gpc_applied() -> None:
    state = stated_consent(["analytics", "bogus", "", "social"], None)
    assert state.granted == {"essential", "analytics", "social"} and state.decided
    assert (state.source, state.reason) == ("page", "ok") and state.key == "f0a1d0s1g0"
    assert stated_consent([], None).granted == {"essential"}
    gpc = stated_consent(["advertising", "analytics"], "1")
    assert gpc.granted == {"essential", "analytics"} and gpc.gpc
    # the same key as the cookie that says the same, so the two share one table
    assert stated_consent(["analytics"], None).key == read_consent("tg_consent=analytics", None).key


def test_consent_cookie_names_are_every_configured_sources_cookies() -> None:
    names = consent_cookie_names()
    assert names == tuple(sorted(names)) and {"tg_consent", "OptanonConsent", "CookieConsent", "euconsent-v2"} <= set(
        names
    )
    assert len(names) == len(set(names))
