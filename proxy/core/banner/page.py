"""The banner on one page: its language, whether to open at once, the JSON blob and the markup (pure).

tag-gate's own banner and preferences centre (`/__tag-gate/banner.js`, for sites that
run no consent manager) is one static script; everything site- and visitor-specific
reaches it as one JSON blob the server writes into the page, right before the script:

    <script type="application/json" id="tag-gate-banner-config">{...}</script>
    <script src="/__tag-gate/banner.js" async nonce="..."></script>

The blob's format (version 1) is documented on `make_banner_config`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, Final

from ..catalog import Catalog
from ..memo import Memo
from .record import parse_consent_cookie
from .settings import LANGUAGE_MODES, BannerSettings, Purpose, Texts
from .texts import SCRIPT_TEXT_KEYS, format_duration, load_builtin_texts, parse_accept_language

FORMAT_VERSION: Final = 1
"""Version of the JSON blob; banner.js ignores a blob of another version."""

CONFIG_ELEMENT_ID: Final = "tag-gate-banner-config"
SCRIPT_PATH: Final = "/__tag-gate/banner.js"
CONSENT_PATH: Final = "/__tag-gate/consent"
PREFERENCES_FRAGMENT: Final = "#tag-gate-preferences"
"""Any link whose href ends with this reopens the preferences centre."""


def _primary(tag: str) -> str:
    return tag.strip().lower().replace("_", "-").partition("-")[0]


def negotiate_language(accept_language: str | None, page_lang: str | None, settings: BannerSettings) -> str:
    """The language to show the banner in: one of `settings.languages`. Never raises.

    With `language = "page"` (the default) the page's `lang` (primary subtag: `fr-CA` →
    `fr`) wins when the banner has it, then the first `Accept-Language` range it has;
    with "browser" the other way round; a fixed language is always used. `*` in
    `Accept-Language` and no match at all give `default_language`.
    """
    if settings.language not in LANGUAGE_MODES:
        return settings.language
    available = settings.languages
    page = [page_lang] if page_lang else []
    browser = parse_accept_language(accept_language) if accept_language else []
    for tag in (page + browser) if settings.language == "page" else (browser + page):
        if tag == "*":
            break
        primary = _primary(tag)
        if primary in available:
            return primary
    return settings.default_language


def decide_reask(cookie_value: str | None, settings: BannerSettings, now: float) -> bool:
    """Whether to open the banner at once for a visitor whose native cookie is
    `cookie_value` (None: no cookie): no or a malformed record, a policy version older
    than `settings.policy_version`, or a decision older than `lifetime_days` (or dated
    more than a day in the future, which only a broken clock or a forged cookie gives)."""
    if cookie_value is None:
        return True
    try:
        record = parse_consent_cookie(cookie_value)
    except ValueError:
        return True
    if record.policy_version < settings.policy_version:
        return True
    age = now - record.time
    return age > settings.lifetime_days * 86400 or age < -86400


def _localised(texts: Texts, lang: str) -> str | None:
    given = dict(texts)
    return given.get(lang) or given.get("*")


def _overrides_for(settings: BannerSettings, lang: str) -> dict[str, str]:
    return dict(next((o for code, o in settings.texts if code == lang), ()))


def _purpose_text(
    purpose: Purpose, which: str, lang: str, builtin: Mapping[str, str], overrides: Mapping[str, str], default: str
) -> str:
    """Operator text for this language, then the purpose's own (this language, then
    every language), then the built-in text of a built-in category, then any."""
    key = f"purpose.{purpose.id}.{which}"
    given = purpose.title if which == "title" else purpose.description
    return (
        overrides.get(key)
        or _localised(given, lang)
        or builtin.get(key)
        or _localised(given, default)
        or (given[0][1] if given else purpose.id)
    )


_MEMO: Memo[tuple[BannerSettings, int, str, bool, str], tuple[Catalog, str]] = Memo(256, 16 << 20)


def make_banner_config(
    settings: BannerSettings,
    catalog: Catalog,
    language: str,
    *,
    open_now: bool = False,
    cookie_name: str = "tg_consent",
) -> str:
    """The JSON blob for one page, as text safe to put inside `<script>` (pure ASCII; `<`,
    `>` and `&` escaped). Memoised per (settings, catalogue, language, open, cookie name).

    `language` should come from `negotiate_language`; one the banner lacks falls back to
    `settings.default_language`. `open_now` is `decide_reask(...)`'s answer. Format 1:

        {"version": 1,                       # of this format
         "policy_version": 3,                # written into the cookie
         "lang": "fr",                       # of the texts
         "open": false,                      # open the banner as soon as the page loads
         "cookie": {"name": "tg_consent", "max_age": 34128000},   # seconds
         "position": "bottom-left",          # of the "Cookie preferences" button, or "none"
         "reopen_selector": "",              # the site's own elements that reopen it
         "endpoint": "/__tag-gate/consent",  # proof-of-consent POST
         "policy_url": "",                   # "" = no link
         "reload_on_withdrawal": true,
         "texts": {"title": ..., "accept_all": ..., ...},   # SCRIPT_TEXT_KEYS
         "purposes": [{"id": "essential", "title": ..., "description": ...,
                       "categories": ["essential"], "required": true,
                       "vendors": [{"name": ..., "description": ..., "cookies": [...],
                                    "retention": "13 months" or ""}]}, ...]}

    Essential lists the consent cookie itself ("This site"); each vendor of
    `settings.vendors` is listed under the purpose that holds its category.
    """
    if language not in settings.languages:
        language = settings.default_language
    key = (settings, id(catalog), language, open_now, cookie_name)
    hit = _MEMO.table.get(key)
    if hit is not None and hit[0] is catalog:
        return hit[1]
    blob = _build(settings, catalog, language, open_now, cookie_name)
    # The catalogue is kept with the entry so its id cannot be reused by another one.
    return _MEMO.put(key, (catalog, blob), len(blob))[1]


def _build(settings: BannerSettings, catalog: Catalog, lang: str, open_now: bool, cookie_name: str) -> str:
    builtin = load_builtin_texts().get(lang, {})
    overrides = _overrides_for(settings, lang)
    texts = {**load_builtin_texts()["en"], **builtin, **overrides}
    lifetime = format_duration(settings.lifetime_days, texts)
    retention = dict(settings.retention)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for vid in settings.vendors:
        vendor = catalog.vendor(vid)
        if vendor is None:
            continue  # removed from the catalogue since the config was read: omit, not fail
        by_category.setdefault(vendor.category, []).append(
            {
                "name": vendor.name,
                "description": texts.get(f"vendor.{vid}", vendor.description),
                "cookies": list(vendor.cookies),
                "retention": format_duration(retention[vid], texts) if vid in retention else "",
            }
        )
    purposes = []
    for p in settings.purposes:
        vendors: list[dict[str, Any]] = []
        if p.required:
            vendors.append(
                {
                    "name": texts["this_site"],
                    "description": texts["consent_cookie"],
                    "cookies": [cookie_name],
                    "retention": lifetime,
                }
            )
        for cat in p.categories:
            vendors.extend(by_category.get(cat, ()))
        purposes.append(
            {
                "id": p.id,
                "title": _purpose_text(p, "title", lang, builtin, overrides, settings.default_language),
                "description": _purpose_text(p, "description", lang, builtin, overrides, settings.default_language),
                "categories": list(p.categories),
                "required": p.required,
                "vendors": vendors,
            }
        )
    script_texts = {k: texts[k] for k in SCRIPT_TEXT_KEYS}
    script_texts["preferences_intro"] = script_texts["preferences_intro"].replace("{lifetime}", lifetime)
    blob = {
        "version": FORMAT_VERSION,
        "policy_version": settings.policy_version,
        "lang": lang,
        "open": open_now,
        "cookie": {"name": cookie_name, "max_age": settings.lifetime_days * 86400},
        "position": settings.position,
        "reopen_selector": settings.reopen_selector,
        "endpoint": CONSENT_PATH,
        "policy_url": settings.policy_url,
        "reload_on_withdrawal": settings.reload_on_withdrawal,
        "texts": script_texts,
        "purposes": purposes,
    }
    text = json.dumps(blob, ensure_ascii=True, separators=(",", ":"))
    # Inside <script> only "</script" and "<!--" matter; escaping all three keeps the
    # blob inert in any context it might be copied into.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def make_banner_snippet(config_json: str, nonce: str | None) -> str:
    """The markup the server inserts (once, at the end of the document): the JSON blob,
    then the script (`async`: it blocks neither parsing nor DOMContentLoaded) with the
    page's CSP nonce. Pure ASCII."""
    nonce_attr = f' nonce="{html.escape(nonce, quote=True)}"' if nonce else ""
    return (
        (
            f'<script type="application/json" id="{CONFIG_ELEMENT_ID}">{config_json}</script>'
            f'<script src="{SCRIPT_PATH}" async{nonce_attr}></script>'
        )
        .encode("ascii", "xmlcharrefreplace")
        .decode("ascii")
    )
