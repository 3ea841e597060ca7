"""The consent banner's per-site configuration (pure: stdlib, proxy.core.catalog, proxy.core.categories).

One package, four modules: `settings` (the `[banner]` table), `texts` (built-in texts,
durations, `Accept-Language`), `page` (language, re-ask, the JSON blob and markup for
one page) and `record` (the cookie and the POST the browser writes). Everything is
importable from here.

tag-gate's own banner and preferences centre (`/__tag-gate/banner.js`, for sites that run
no consent manager) is one static script; everything site- and visitor-specific reaches
it as one JSON blob the server writes into the page, right before the script:

    <script type="application/json" id="tag-gate-banner-config">{...}</script>
    <script src="/__tag-gate/banner.js" async nonce="..."></script>

This package owns that blob and what feeds it:

- `parse_banner(table, ...)` validates the operator's `[banner]` TOML table into a frozen,
  hashable `BannerSettings` (raises `BannerError` listing every problem with its TOML path,
  like `proxy.core.config`);
- `negotiate_language(...)` picks the banner's language from the page's `lang` and
  `Accept-Language` (q-values);
- `decide_reask(...)` says whether a visitor's `tg_consent` cookie is missing, malformed,
  from an older policy version or older than the configured lifetime;
- `make_banner_config(...)` builds the JSON blob (memoised per settings, catalogue,
  language, open flag and cookie name) and `make_banner_snippet(blob, nonce)` the markup;
- `parse_consent_cookie` and `parse_consent_record` read the two things the browser
  writes: the cookie and the proof-of-consent POST body (docs/consent-record.schema.json).

The blob's format (version 1) is documented on `make_banner_config`. Texts for en, fr,
de, es, it and nl are data: `proxy/data/banner/i18n/<lang>.toml`, read once.
"""

from __future__ import annotations

from .page import (
    CONFIG_ELEMENT_ID,
    CONSENT_PATH,
    FORMAT_VERSION,
    PREFERENCES_FRAGMENT,
    SCRIPT_PATH,
    decide_reask,
    make_banner_config,
    make_banner_snippet,
    negotiate_language,
)
from .record import (
    CONSENT_ID,
    MAX_RECORD_BYTES,
    ConsentCookie,
    ConsentRecord,
    parse_consent_cookie,
    parse_consent_record,
)
from .settings import (
    DEFAULT_LIFETIME_DAYS,
    DEFAULT_PURPOSES,
    LANGUAGE_MODES,
    MAX_LIFETIME_DAYS,
    MAX_PURPOSES,
    MAX_TEXT_LENGTH,
    POSITIONS,
    BannerSettings,
    Purpose,
    Texts,
    parse_banner,
)
from .texts import (
    BUILTIN_LANGUAGES,
    SCRIPT_TEXT_KEYS,
    TEXT_KEYS,
    BannerError,
    format_duration,
    load_builtin_texts,
    parse_accept_language,
    parse_duration,
)

__all__ = [
    "BUILTIN_LANGUAGES",
    "CONFIG_ELEMENT_ID",
    "CONSENT_ID",
    "CONSENT_PATH",
    "DEFAULT_LIFETIME_DAYS",
    "DEFAULT_PURPOSES",
    "FORMAT_VERSION",
    "LANGUAGE_MODES",
    "MAX_LIFETIME_DAYS",
    "MAX_PURPOSES",
    "MAX_RECORD_BYTES",
    "MAX_TEXT_LENGTH",
    "POSITIONS",
    "PREFERENCES_FRAGMENT",
    "SCRIPT_PATH",
    "SCRIPT_TEXT_KEYS",
    "TEXT_KEYS",
    "BannerError",
    "BannerSettings",
    "ConsentCookie",
    "ConsentRecord",
    "Purpose",
    "Texts",
    "decide_reask",
    "format_duration",
    "load_builtin_texts",
    "make_banner_config",
    "make_banner_snippet",
    "negotiate_language",
    "parse_accept_language",
    "parse_banner",
    "parse_consent_cookie",
    "parse_consent_record",
    "parse_duration",
]
