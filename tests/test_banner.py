"""proxy.core.banner: the [banner] table, language negotiation, the cookie record, the JSON
blob and markup banner.js reads, and the proof-of-consent body (browser tests:
tests/e2e/test_banner.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from proxy.core.banner import (
    BUILTIN_LANGUAGES,
    DEFAULT_PURPOSES,
    SCRIPT_TEXT_KEYS,
    TEXT_KEYS,
    BannerError,
    BannerSettings,
    ConsentCookie,
    decide_reask,
    format_duration,
    load_builtin_texts,
    make_banner_config,
    make_banner_snippet,
    negotiate_language,
    parse_accept_language,
    parse_banner,
    parse_consent_cookie,
    parse_consent_record,
    parse_duration,
)
from proxy.core.catalog import Catalog, make_catalog
from proxy.core.categories import BUILTIN_CATEGORIES
from tests.schema_check import check

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "consent-record.schema.json").read_text(encoding="utf-8"))
CATALOG = make_catalog()
VENDOR_IDS = frozenset(v.id for v in CATALOG.vendors)


def banner(**table: Any) -> BannerSettings:
    return parse_banner(table, vendor_ids=VENDOR_IDS)


def problems(**table: Any) -> list[str]:
    with pytest.raises(BannerError) as info:
        parse_banner(table, vendor_ids=VENDOR_IDS)
    return list(info.value.problems)


def blob(settings: BannerSettings, lang: str = "en", **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(make_banner_config(settings, CATALOG, lang, **kw))
    return data


# --------------------------------------------------------------------------- texts


def test_every_language_has_every_key_and_no_empty_text() -> None:
    texts = load_builtin_texts()
    assert tuple(texts) == BUILTIN_LANGUAGES
    keys = set(texts["en"])
    assert set(TEXT_KEYS) <= keys
    for lang, table in texts.items():
        assert set(table) == keys, lang
        for key, text in table.items():
            assert text.strip() == text and text, (lang, key)
            if key in ("day", "days", "month", "months", "year", "years"):
                assert "{n}" in text, (lang, key)
        assert "{lifetime}" in table["preferences_intro"], lang
        assert table["accept_all"] != table["refuse_all"], lang


def test_text_files_are_the_ones_loaded() -> None:
    folder = REPO / "proxy" / "data" / "banner" / "i18n"
    assert sorted(p.stem for p in folder.glob("*.toml")) == sorted(BUILTIN_LANGUAGES)
    for lang in BUILTIN_LANGUAGES:
        tomllib.loads((folder / f"{lang}.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("duration", "lang", "expected"),
    [
        (395, "en", "13 months"),
        (395, "fr", "13\u00a0mois"),
        (365, "de", "1 Jahr"),
        (730, "nl", "2 jaar"),
        (30, "it", "1 mese"),
        (1, "es", "1 día"),
        (29, "en", "29 days"),
        ("2 years", "es", "2 años"),
        ("1 month", "de", "1 Monat"),
        ("session", "fr", "jusqu’à la fermeture du navigateur"),
    ],
)
def test_format_duration(duration: str | int, lang: str, expected: str) -> None:
    assert format_duration(duration, load_builtin_texts()[lang]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("13 months", "13 months"), ("1 Years", "1 year"), (" 30 day ", "30 days"), ("Session", "session")],
)
def test_parse_duration(text: str, expected: str) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["13", "months", "0 days", "1.5 years", "13 weeks", "-1 day", ""])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration|retention of 0"):
        parse_duration(text)


# --------------------------------------------------------------------------- [banner]


def test_defaults() -> None:
    settings = banner()
    assert settings == BannerSettings()
    assert settings.purposes == DEFAULT_PURPOSES
    assert settings.categories == ("functional", "analytics", "advertising", "social")
    assert settings.lifetime_days == 395 and settings.policy_version == 1 and not settings.enabled


def test_full_table() -> None:
    settings = banner(
        enabled=True,
        policy_version=3,
        lifetime_days=180,
        position="none",
        reopen_selector=".footer a.cookies",
        language="browser",
        default_language="fr",
        policy_url="/privacy",
        reload_on_withdrawal=False,
        vendors=["google-analytics", "youtube"],
        retention={"google-analytics": "2 years"},
        purpose=[
            {"id": "essential", "categories": ["essential"]},
            {
                "id": "improvement",
                "title": {"en": "Improvement: analytics and chat", "fr": "Amélioration"},
                "description": "Analytics and chat.",
                "categories": ["analytics", "functional"],
            },
            {"id": "advertising", "categories": ["advertising"]},
            {"id": "social", "categories": ["social"]},
        ],
        texts={"fr": {"accept_all": "J'accepte tout", "purpose": {"improvement": {"description": "Mesure et chat."}}}},
        proof_sink="file",
        proof_file="/var/log/tag-gate/consent.jsonl",
        proof_max_size="1MiB",
        proof_keep=3,
        proof_salt="s3cret-s3cret-s3cret",
        proof_rate=5,
    )
    assert settings.policy_version == 3 and settings.position == "none"
    assert (settings.proof_sink, settings.proof_file, settings.proof_max_size, settings.proof_keep) == (
        "file",
        "/var/log/tag-gate/consent.jsonl",
        1 << 20,
        3,
    )
    assert settings.proof_salt == "s3cret-s3cret-s3cret" and settings.proof_rate == 5
    assert "s3cret" not in repr(settings), "the salt is a secret: never in a log line"
    assert [p.id for p in settings.purposes] == ["essential", "improvement", "advertising", "social"]
    assert settings.categories == ("analytics", "functional", "advertising", "social")
    assert settings.retention == (("google-analytics", "2 years"),)
    assert settings.texts == (
        ("fr", (("accept_all", "J'accepte tout"), ("purpose.improvement.description", "Mesure et chat."))),
    )
    hash(settings)  # memo keys


def test_essential_purpose_is_added_when_no_purpose_holds_it() -> None:
    settings = banner(
        purpose=[{"id": "all", "title": "All", "description": "All of it.", "categories": list(BUILTIN_CATEGORIES[1:])}]
    )
    assert [p.id for p in settings.purposes] == ["essential", "all"]
    assert settings.purposes[0].required and not settings.purposes[1].required


BAD_TABLES: list[tuple[dict[str, Any], str]] = [
    ({"enabeld": True}, "banner.enabeld: unknown key"),
    ({"enabled": "yes"}, "banner.enabled: expected true or false, got a string"),
    ({"policy_version": 0}, "banner.policy_version: expected a number from 1 to 999999, got 0"),
    ({"policy_version": 1.5}, "banner.policy_version: expected a whole number, got a number"),
    ({"lifetime_days": 500}, "banner.lifetime_days: expected a number from 1 to 400, got 500"),
    ({"position": "top"}, "banner.position: expected one of bottom-left, bottom-right, none"),
    ({"reopen_selector": "<a>"}, "banner.reopen_selector: '<a>' is not a CSS selector"),
    ({"language": "pl"}, 'banner.language: expected "page", "browser" or a language'),
    ({"default_language": "page"}, "banner.default_language: expected one of en, fr, de, es, it, nl, got 'page'"),
    ({"policy_url": "javascript:alert(1)"}, "banner.policy_url: expected a path on the site"),
    ({"policy_url": "//evil.example/"}, "banner.policy_url: expected a path on the site"),
    ({"vendors": ["google-analytics", "nope"]}, "banner.vendors[1]: unknown vendor id 'nope'"),
    ({"vendors": ["hotjar", "hotjar"]}, "banner.vendors[1]: 'hotjar' is listed twice"),
    ({"vendors": "hotjar"}, "banner.vendors: expected an array of vendor ids, got a string"),
    ({"retention": {"hotjar": "1 year"}}, "banner.retention.hotjar: not in banner.vendors"),
    ({"vendors": ["hotjar"], "retention": {"hotjar": "forever"}}, "banner.retention.hotjar: cannot read 'forever'"),
    ({"purpose": []}, "banner.purpose: empty"),
    ({"purpose": {"id": "x"}}, "banner.purpose: expected an array of tables"),
    (
        {"purpose": [{"id": "Improve", "categories": ["analytics"]}]},
        "banner.purpose[0].id: expected a lowercase id",
    ),
    (
        {"purpose": [{"id": "a", "title": "A", "description": "A.", "categories": ["analytics", "tracking"]}]},
        "banner.purpose[0].categories[1]: unknown category 'tracking'",
    ),
    (
        {
            "purpose": [
                {"id": "analytics", "categories": ["analytics"]},
                {"id": "more", "title": "M", "description": "M.", "categories": ["analytics"]},
            ]
        },
        "banner.purpose[1].categories[0]: 'analytics' is already in purpose 'analytics'",
    ),
    (
        {"purpose": [{"id": "base", "title": "B", "description": "B.", "categories": ["essential", "functional"]}]},
        "banner.purpose[0].categories: essential is always on",
    ),
    (
        {"purpose": [{"id": "analytics", "categories": ["analytics"]}]},
        "banner.purpose: categories in no purpose: advertising, functional, social",
    ),
    (
        {"purpose": [{"id": "improve", "description": "x", "categories": ["analytics"]}]},
        "banner.purpose[0].title: required",
    ),
    (
        {"purpose": [{"id": "improve", "title": {"xx": "?"}, "description": "x", "categories": ["analytics"]}]},
        "banner.purpose[0].title.xx: unknown language",
    ),
    (
        {"purpose": [{"id": "analytics", "categories": ["analytics"], "colour": "red"}]},
        "banner.purpose[0].colour: unknown key",
    ),
    ({"texts": {"fr": {"acept_all": "Oui"}}}, "banner.texts.fr.acept_all: unknown text key"),
    ({"texts": {"fr": {"accept_all": ""}}}, "banner.texts.fr.accept_all: must not be empty"),
    ({"texts": {"fr": {"months": "mois"}}}, 'banner.texts.fr.months: must contain "{n}"'),
    ({"texts": {"fr": {"vendor": {"hotjar": "x"}}}}, "banner.texts.fr.vendor.hotjar: unknown text key"),
    ({"texts": {"pl": {"title": "Pliki cookie"}}}, "banner.texts.pl: no built-in texts for 'pl'"),
    ({"texts": {"FR": {"title": "x"}}}, "banner.texts.FR: expected a two- or three-letter lowercase language code"),
    ({"texts": "fr"}, "banner.texts: expected a table of languages"),
    ({"enabled": True}, 'banner.proof_salt: required with proof_sink = "stdout"'),
    ({"proof_salt": "short"}, "banner.proof_salt: at least 16 characters"),
    ({"proof_sink": "syslog"}, "banner.proof_sink: expected one of stdout, file, off"),
    ({"proof_sink": "file"}, 'banner.proof_file: required with proof_sink = "file"'),
    ({"proof_file": " /tmp/x"}, "banner.proof_file: ' /tmp/x': leading or trailing spaces"),
    ({"proof_max_size": "1kB"}, "banner.proof_max_size: at least 64KiB"),
    ({"proof_keep": 0}, "banner.proof_keep: expected a number from 1 to 100"),
    ({"proof_rate": "fast"}, "banner.proof_rate: expected a whole number"),
]


@pytest.mark.parametrize(("table", "message"), BAD_TABLES, ids=[m.split(":")[0] for _, m in BAD_TABLES])
def test_problems_name_their_toml_path(table: dict[str, Any], message: str) -> None:
    found = problems(**table)
    assert any(p.startswith(message) for p in found), found


def test_no_salt_needed_without_proof_lines() -> None:
    assert banner(enabled=True, proof_sink="off").enabled
    assert not banner(proof_sink="stdout").enabled  # a disabled banner writes nothing


def test_every_problem_is_reported_at_once() -> None:
    found = problems(enabled=1, position="top", lifetime_days=0, vendors=["nope"])
    assert [p.split(":")[0] for p in found] == [
        "banner.vendors[0]",
        "banner.enabled",
        "banner.lifetime_days",
        "banner.position",
    ]


def test_operator_categories_must_be_grouped() -> None:
    with pytest.raises(BannerError, match="adds categories \\(chat\\)"):
        parse_banner({}, categories=(*BUILTIN_CATEGORIES, "chat"))
    settings = parse_banner(
        {
            "purpose": [
                {"id": "functional", "categories": ["functional", "analytics"]},
                {"id": "chat", "title": "Chat", "description": "Live chat.", "categories": ["chat"]},
                {"id": "ads", "title": "Ads", "description": "Ads.", "categories": ["advertising", "social"]},
            ]
        },
        categories=(*BUILTIN_CATEGORIES, "chat"),
    )
    assert settings.categories == ("functional", "analytics", "chat", "advertising", "social")


def test_a_complete_operator_language_becomes_available() -> None:
    en = load_builtin_texts()["en"]
    polish = {k: en[k] + " (pl)" for k in TEXT_KEYS}
    settings = banner(
        texts={"pl": polish | {"purpose": {c: {"title": c, "description": c} for c in BUILTIN_CATEGORIES}}}
    )
    assert "pl" in settings.languages
    assert negotiate_language("pl-PL,en;q=0.5", None, settings) == "pl"
    data = blob(settings, "pl")
    assert data["lang"] == "pl" and data["texts"]["accept_all"] == "Accept all (pl)"
    assert data["purposes"][2]["title"] == "analytics"
    missing = problems(texts={"pl": polish})
    assert "banner.texts.pl.purpose.essential.title: missing (no built-in text in this language)" in missing


# --------------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", ["fr-ch", "fr", "en", "de", "*"]),
        ("de;q=0.5, nl", ["nl", "de"]),
        ("en;q=0, it", ["it"]),
        ("es;q=abc, it;q=0.1", ["it"]),
        ("es;q=nan, it;q=2", []),
        ("x-made-up-very-long-tag-123456789", []),
        ("", []),
        (",,;;==", []),
        ("EN-gb;Q=0.3", ["en-gb"]),
    ],
)
def test_parse_accept_language(header: str, expected: list[str]) -> None:
    assert parse_accept_language(header) == expected


@pytest.mark.parametrize(
    ("accept", "page", "mode", "expected"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", None, "page", "fr"),
        ("pl,de;q=0.8,en;q=0.5", None, "page", "de"),
        ("fr", "nl-BE", "page", "nl"),
        ("fr", "nl-BE", "browser", "fr"),
        ("pl", "pt-BR", "page", "en"),
        ("*", None, "page", "en"),
        (None, "IT", "page", "it"),
        (None, "de_AT", "page", "de"),
        (None, None, "page", "en"),
        ("de", "fr", "es", "es"),
        ("garbage;;;", "", "page", "en"),
    ],
)
def test_negotiate_language(accept: str | None, page: str | None, mode: str, expected: str) -> None:
    assert negotiate_language(accept, page, banner(language=mode)) == expected


def test_default_language_when_nothing_matches() -> None:
    assert negotiate_language("pl", None, banner(default_language="de")) == "de"


# --------------------------------------------------------------------------- the cookie

NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "analytics.social~3~1796300000~Hk3J9dPq2LmN8xYz",
            ConsentCookie(frozenset({"analytics", "social"}), 3, 1796300000, "Hk3J9dPq2LmN8xYz"),
        ),
        ("~1~1796300000~Hk3J9dPq2LmN8xYz_-abcd", ConsentCookie(frozenset(), 1, 1796300000, "Hk3J9dPq2LmN8xYz_-abcd")),
        ("analytics", ConsentCookie(frozenset({"analytics"}), 0, 0, "")),
        ("none", ConsentCookie(frozenset(), 0, 0, "")),
    ],
)
def test_parse_consent_cookie(value: str, expected: ConsentCookie) -> None:
    assert parse_consent_cookie(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "analytics~3~1796300000",
        "analytics~3~1796300000~short",
        "analytics~x~1796300000~Hk3J9dPq2LmN8xYz",
        "analytics~3~-1~Hk3J9dPq2LmN8xYz",
        "analytics~3~1796300000~Hk3J9dPq2LmN8xYz~more",
        "analytics~3~1796300000~Hk3J9dPq2LmN8xYz!",
    ],
)
def test_parse_consent_cookie_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_consent_cookie(value)


@pytest.mark.parametrize(
    ("value", "reask"),
    [
        (None, True),
        ("analytics", True),  # no record: written by hand or by bridge.js
        ("analytics~2~1799000000~Hk3J9dPq2LmN8xYz", False),
        ("analytics~1~1799000000~Hk3J9dPq2LmN8xYz", True),  # older policy
        ("analytics~3~1799000000~Hk3J9dPq2LmN8xYz", False),  # newer policy (rolled back): keep
        (f"analytics~2~{NOW - 395 * 86400}~Hk3J9dPq2LmN8xYz", False),
        (f"analytics~2~{NOW - 395 * 86400 - 1}~Hk3J9dPq2LmN8xYz", True),  # older than the lifetime
        (f"analytics~2~{NOW + 2 * 86400}~Hk3J9dPq2LmN8xYz", True),  # from the future
        ("analytics~2~1799000000~bad", True),
    ],
)
def test_decide_reask(value: str | None, reask: bool) -> None:
    assert decide_reask(value, banner(policy_version=2), NOW) is reask


# --------------------------------------------------------------------------- the blob


def test_blob_format() -> None:
    data = blob(
        banner(policy_version=4, policy_url="/privacy?x=<b>&y"), "de", open_now=True, cookie_name="site_consent"
    )
    assert list(data) == [
        "version",
        "policy_version",
        "lang",
        "open",
        "cookie",
        "position",
        "reopen_selector",
        "endpoint",
        "policy_url",
        "reload_on_withdrawal",
        "texts",
        "purposes",
    ]
    assert data["version"] == 1 and data["policy_version"] == 4 and data["lang"] == "de" and data["open"] is True
    assert data["cookie"] == {"name": "site_consent", "max_age": 395 * 86400}
    assert data["endpoint"] == "/__tag-gate/consent" and data["policy_url"] == "/privacy?x=<b>&y"
    assert list(data["texts"]) == list(SCRIPT_TEXT_KEYS)
    assert data["texts"]["accept_all"] == "Alle akzeptieren"
    assert "13 Monate lang" in data["texts"]["preferences_intro"]
    assert [p["id"] for p in data["purposes"]] == list(BUILTIN_CATEGORIES)
    essential = data["purposes"][0]
    assert essential["required"] is True and essential["title"] == "Notwendig"
    assert essential["vendors"] == [
        {
            "name": "Diese Website",
            "description": "Speichert Ihre Cookie-Auswahl.",
            "cookies": ["site_consent"],
            "retention": "13 Monate",
        }
    ]
    assert all(p["required"] is False and p["vendors"] == [] for p in data["purposes"][1:])


def test_blob_is_inert_ascii() -> None:
    text = make_banner_config(banner(policy_url="/p?a=</script><!--&"), CATALOG, "fr")
    assert text.isascii()
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["policy_url"] == "/p?a=</script><!--&"


def test_vendors_are_listed_under_their_purpose() -> None:
    settings = banner(
        vendors=["youtube", "google-analytics", "hotjar", "stripe"],
        retention={"google-analytics": "13 months", "hotjar": "1 year"},
        purpose=[
            {
                "id": "improvement",
                "title": "Improvement",
                "description": "Better.",
                "categories": ["analytics", "functional"],
            },
            {
                "id": "marketing",
                "title": "Marketing",
                "description": "Ads and embeds.",
                "categories": ["advertising", "social"],
            },
        ],
        texts={"fr": {"vendor": {"hotjar": "Cartes de chaleur par Hotjar."}}},
    )
    data = blob(settings, "fr")
    by_id = {p["id"]: p for p in data["purposes"]}
    assert list(by_id) == ["essential", "improvement", "marketing"]
    assert [v["name"] for v in by_id["essential"]["vendors"]] == ["Ce site", "Stripe"]
    improvement = by_id["improvement"]["vendors"]
    assert [v["name"] for v in improvement] == ["Google Analytics", "Hotjar"]
    assert improvement[0]["retention"] == "13\u00a0mois" and "_ga" in improvement[0]["cookies"]
    assert improvement[0]["description"] == CATALOG.vendor("google-analytics").description  # type: ignore[union-attr]
    assert improvement[1] | {"cookies": []} == {
        "name": "Hotjar",
        "description": "Cartes de chaleur par Hotjar.",
        "cookies": [],
        "retention": "1\u00a0an",
    }
    assert [v["name"] for v in by_id["marketing"]["vendors"]] == ["YouTube"]
    assert by_id["improvement"]["title"] == "Improvement"  # one text for every language


def test_operator_texts_win_per_language() -> None:
    settings = banner(
        texts={"fr": {"accept_all": "J’accepte", "purpose": {"analytics": {"title": "Statistiques"}}}},
        purpose=[
            {"id": "essential", "categories": ["essential"], "title": {"en": "Strictly necessary"}},
            {"id": "functional", "categories": ["functional"]},
            {"id": "analytics", "categories": ["analytics"], "title": {"fr": "Audience", "de": "Reichweite"}},
            {"id": "advertising", "categories": ["advertising"]},
            {"id": "social", "categories": ["social"]},
        ],
    )
    fr, de, en = blob(settings, "fr"), blob(settings, "de"), blob(settings, "en")
    assert fr["texts"]["accept_all"] == "J’accepte" and de["texts"]["accept_all"] == "Alle akzeptieren"
    assert fr["purposes"][2]["title"] == "Statistiques"  # [banner.texts.fr] beats the purpose's own
    assert de["purposes"][2]["title"] == "Reichweite"
    assert en["purposes"][2]["title"] == "Analytics"  # built-in text for a built-in id
    assert en["purposes"][0]["title"] == "Strictly necessary" and fr["purposes"][0]["title"] == "Essentiels"


def test_unknown_language_falls_back_to_default() -> None:
    assert blob(banner(default_language="it"), "pl")["lang"] == "it"


def test_memoised_per_settings_catalogue_language_and_flag() -> None:
    settings = banner(vendors=["hotjar"])
    first = make_banner_config(settings, CATALOG, "en")
    assert make_banner_config(banner(vendors=["hotjar"]), CATALOG, "en") is first
    assert make_banner_config(settings, CATALOG, "en", open_now=True) is not first
    assert make_banner_config(settings, CATALOG, "nl") is not first
    other = Catalog(CATALOG.vendors)
    assert make_banner_config(settings, other, "en") == first
    assert make_banner_config(settings, other, "en") is not first


def test_vendor_missing_from_a_later_catalogue_is_omitted() -> None:
    settings = banner(vendors=["hotjar"])
    data = json.loads(make_banner_config(settings, Catalog(()), "en"))
    assert all(v["name"] == "This site" for p in data["purposes"] for v in p["vendors"])


def test_snippet() -> None:
    markup = make_banner_snippet('{"version":1}', 'r4nd"om&')
    assert markup == (
        '<script type="application/json" id="tag-gate-banner-config">{"version":1}</script>'
        '<script src="/__tag-gate/banner.js" async nonce="r4nd&quot;om&amp;"></script>'
    )
    assert make_banner_snippet("{}", None).endswith('<script src="/__tag-gate/banner.js" async></script>')
    assert make_banner_snippet("{}", "é").isascii()


def test_blob_size_stays_small() -> None:
    """The blob is in every gated page: keep the default one under 4 KB."""
    assert len(make_banner_config(banner(), CATALOG, "fr")) < 4096


# --------------------------------------------------------------------------- the POST

GOOD_RECORD = {
    "consent_id": "Hk3J9dPq2LmN8xYz_-AbCd",
    "policy_version": 3,
    "granted": ["analytics"],
    "refused": ["functional", "advertising", "social"],
    "page": "https://www.shop.test/products/42",
    "time": 1796300000,
    "action": "save",
}

BAD_RECORDS: list[tuple[dict[str, Any], str]] = [
    ({"consent_id": "short"}, "consent_id"),
    ({"consent_id": "Hk3J9dPq2LmN8xYz+/AbCd"}, "consent_id"),
    ({"policy_version": 0}, "policy_version"),
    ({"policy_version": "3"}, "policy_version"),
    ({"time": -1}, "time"),
    ({"time": True}, "time"),
    ({"granted": "analytics"}, "granted"),
    ({"granted": ["Analytics"]}, "granted"),
    ({"refused": ["social", "social"]}, "refused"),
    ({"page": "https://www.shop.test/p?q=secret"}, "page"),
    ({"page": "https://www.shop.test/p#top"}, "page"),
    ({"page": "javascript:alert(1)"}, "page"),
    ({"action": "dismiss"}, "action"),
    ({"extra": 1}, "keys"),
]


def test_good_record() -> None:
    assert check(SCHEMA, GOOD_RECORD) == []
    record = parse_consent_record(json.dumps(GOOD_RECORD).encode())
    assert record.granted == ("analytics",) and record.action == "save" and record.policy_version == 3


@pytest.mark.parametrize(("change", "where"), BAD_RECORDS, ids=[f"{w}-{i}" for i, (_, w) in enumerate(BAD_RECORDS)])
def test_schema_and_parser_agree_on_bad_records(change: dict[str, Any], where: str) -> None:
    body = GOOD_RECORD | change
    assert check(SCHEMA, body) != []
    with pytest.raises(ValueError, match=where):
        parse_consent_record(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b"[" * 100_000, "larger than"),
        (json.dumps(GOOD_RECORD | {"granted": ["essential"]}).encode(), "not a category that needs consent"),
        (json.dumps(GOOD_RECORD | {"granted": ["tracking"]}).encode(), "not a category that needs consent"),
        (json.dumps(GOOD_RECORD | {"granted": ["social"]}).encode(), "both granted and refused"),
        (json.dumps({k: v for k, v in GOOD_RECORD.items() if k != "time"}).encode(), "missing \\['time'\\]"),
    ],
)
def test_parse_consent_record_refuses(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_consent_record(body)


def test_the_documented_table_is_valid() -> None:
    """docs/banner.md's [banner] table parses, and means what it says."""
    text = (REPO / "docs" / "banner.md").read_text(encoding="utf-8")
    block = text.split("## The `[banner]` table", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    settings = parse_banner(tomllib.loads(block)["banner"], vendor_ids=VENDOR_IDS)
    assert [p.id for p in settings.purposes] == ["essential", "improvement", "advertising", "social"]
    data = blob(settings, "fr")
    assert data["purposes"][1]["title"] == "Amélioration\u00a0: mesure d’audience et chat"
    assert data["purposes"][1]["description"] == "Mesurer les visites et proposer un chat en direct."
    assert data["texts"]["accept_all"] == "J'accepte tout"
    assert [v["name"] for v in data["purposes"][1]["vendors"]] == ["Google Analytics", "Hotjar"]


def test_a_proof_file_with_several_workers_is_a_config_error() -> None:
    from proxy.core.config import ConfigError, parse_config

    banner = {"enabled": True, "proof_salt": "s" * 16, "proof_sink": "file", "proof_file": "/tmp/p.jsonl"}
    with pytest.raises(ConfigError, match=r'banner.proof_sink: "file" with several workers'):
        parse_config({"server": {"workers": 2}, "banner": banner})
    parse_config({"server": {"workers": 1}, "banner": banner})
    parse_config({"server": {"workers": 2}, "banner": {**banner, "proof_sink": "stdout"}})
