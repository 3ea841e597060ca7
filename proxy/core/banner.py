"""The consent banner's per-site configuration (pure: stdlib, proxy.core.catalog, proxy.core.categories).

tag-gate's own banner and preferences centre (`/__tag-gate/banner.js`, for sites that run
no consent manager) is one static script; everything site- and visitor-specific reaches
it as one JSON blob the server writes into the page, right before the script:

    <script type="application/json" id="tag-gate-banner-config">{...}</script>
    <script src="/__tag-gate/banner.js" defer nonce="..."></script>

This module owns that blob and what feeds it:

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

import html
import json
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from .catalog import Catalog
from .categories import BUILTIN_CATEGORIES, ESSENTIAL
from .memo import Memo

__all__ = [
    "BUILTIN_LANGUAGES",
    "CONFIG_ELEMENT_ID",
    "CONSENT_PATH",
    "DEFAULT_PURPOSES",
    "PREFERENCES_FRAGMENT",
    "SCRIPT_PATH",
    "BannerError",
    "BannerSettings",
    "ConsentCookie",
    "ConsentRecord",
    "Purpose",
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

FORMAT_VERSION: Final = 1
"""Version of the JSON blob; banner.js ignores a blob of another version."""

CONFIG_ELEMENT_ID: Final = "tag-gate-banner-config"
SCRIPT_PATH: Final = "/__tag-gate/banner.js"
CONSENT_PATH: Final = "/__tag-gate/consent"
PREFERENCES_FRAGMENT: Final = "#tag-gate-preferences"
"""Any link whose href ends with this reopens the preferences centre."""

BUILTIN_LANGUAGES: Final = ("en", "fr", "de", "es", "it", "nl")
DEFAULT_LIFETIME_DAYS: Final = 395
"""13 months, the usual regulators' ceiling for how long a consent choice is kept."""
MAX_LIFETIME_DAYS: Final = 400
"""Browsers cap a cookie's lifetime at 400 days (RFC 6265bis); a longer one is not kept."""
POSITIONS: Final = ("bottom-left", "bottom-right", "none")
LANGUAGE_MODES: Final = ("page", "browser")
MAX_PURPOSES: Final = 20
MAX_TEXT_LENGTH: Final = 2000
CONSENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,24}")
"""A consent id as banner.js writes it (22 characters today)."""

TEXT_KEYS: Final = (
    "title",
    "intro",
    "purposes_label",
    "accept_all",
    "refuse_all",
    "choose",
    "save",
    "close",
    "preferences_title",
    "preferences_intro",
    "preferences_button",
    "always_on",
    "services",
    "cookies",
    "retention",
    "policy_link",
    "saved",
    "this_site",
    "consent_cookie",
    "session",
    "day",
    "days",
    "month",
    "months",
    "year",
    "years",
)
"""Keys every language has (besides `purpose.<category>.title|description`)."""

SCRIPT_TEXT_KEYS: Final = TEXT_KEYS[:17]
"""The keys banner.js reads; the rest are used here to build purposes and vendors."""

_DURATION_KEYS: Final = ("day", "days", "month", "months", "year", "years")
_PURPOSE_FIELDS: Final = ("title", "description")
_ID: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LANG: Final = re.compile(r"[a-z]{2,3}")
_DURATION: Final = re.compile(r"\s*([0-9]{1,4})\s+(day|days|month|months|year|years)\s*")
_LANG_TAG: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_CATEGORY_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")


class BannerError(ValueError):
    """One or more problems in a `[banner]` table, each prefixed with its TOML path.

    `problems` holds every problem found, so `proxy.core.config` can merge them into its
    own report.
    """

    problems: tuple[str, ...]

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


Texts = tuple[tuple[str, str], ...]
"""(key, text) pairs: a frozen, hashable mapping."""


@dataclass(frozen=True, slots=True)
class Purpose:
    """One toggle of the preferences centre: the categories it grants together.

    `title` and `description` are (language, text) pairs, `*` meaning every language;
    when neither names the page's language, the built-in texts of the purpose whose
    id is a built-in category are used, then the `*` or first entry. A purpose holding
    `essential` is shown as always on and holds nothing else.
    """

    id: str
    categories: tuple[str, ...]
    title: Texts = ()
    description: Texts = ()

    @property
    def required(self) -> bool:
        return ESSENTIAL in self.categories


DEFAULT_PURPOSES: Final = tuple(Purpose(c, (c,)) for c in BUILTIN_CATEGORIES)
"""One purpose per built-in category, titled and described by the built-in texts."""


@dataclass(frozen=True, slots=True)
class BannerSettings:
    """The validated `[banner]` table (see `parse_banner` for each key). Hashable."""

    enabled: bool = False
    policy_version: int = 1
    lifetime_days: int = DEFAULT_LIFETIME_DAYS
    position: Literal["bottom-left", "bottom-right", "none"] = "bottom-left"
    reopen_selector: str = ""
    language: str = "page"
    default_language: str = "en"
    policy_url: str = ""
    reload_on_withdrawal: bool = True
    purposes: tuple[Purpose, ...] = DEFAULT_PURPOSES
    vendors: tuple[str, ...] = ()
    retention: tuple[tuple[str, str], ...] = ()
    """(vendor id, duration) with durations as `parse_duration` accepts them."""
    texts: tuple[tuple[str, Texts], ...] = ()
    """(language, overrides) with keys flattened (`purpose.analytics.title`)."""
    languages: tuple[str, ...] = BUILTIN_LANGUAGES
    """Languages the banner can be shown in: the built-in ones and complete operator sets."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The non-essential categories the banner asks about, in purpose order."""
        return tuple(c for p in self.purposes for c in p.categories if c != ESSENTIAL)


# --------------------------------------------------------------------------- built-in texts


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _builtin_keys() -> frozenset[str]:
    purposes = {f"purpose.{c}.{f}" for c in BUILTIN_CATEGORIES for f in _PURPOSE_FIELDS}
    return frozenset(TEXT_KEYS) | purposes


@cache
def load_builtin_texts() -> Mapping[str, Mapping[str, str]]:
    """The package's texts, `{language: {flattened key: text}}`, read once per process.

    Raises BannerError when a file is missing, not TOML, or its keys differ from the
    expected set: a packaging mistake, reported rather than shown half-translated.
    """
    folder = resources.files("proxy") / "data" / "banner" / "i18n"
    expected = _builtin_keys()
    out: dict[str, Mapping[str, str]] = {}
    problems: list[str] = []
    for lang in BUILTIN_LANGUAGES:
        name = f"banner/i18n/{lang}.toml"
        try:
            data = tomllib.loads((folder / f"{lang}.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        texts = dict(_flatten(data))
        missing, extra = sorted(expected - texts.keys()), sorted(texts.keys() - expected)
        if missing:
            problems.append(f"{name}: missing keys {', '.join(missing)}")
        if extra:
            problems.append(f"{name}: unknown keys {', '.join(extra)}")
        problems.extend(f"{name}: {k}: expected a string" for k, v in texts.items() if not isinstance(v, str))
        out[lang] = texts
    if problems:
        raise BannerError(problems)
    return out


# --------------------------------------------------------------------------- durations


def parse_duration(text: str) -> str:
    """Validate a retention such as `"13 months"`, `"2 years"`, `"30 days"` or `"session"`
    and return it normalised (`"1 months"` → `"1 month"`). Raises ValueError."""
    if text.strip().lower() == "session":
        return "session"
    m = _DURATION.fullmatch(text.lower())
    if m is None:
        raise ValueError(
            f'cannot read {text!r} as a duration: write e.g. "13 months", "2 years", "30 days" or "session"'
        )
    n, unit = int(m.group(1)), m.group(2).rstrip("s")
    if n == 0:
        raise ValueError(f'{text!r}: a retention of 0 is not a retention; use "session"')
    return f"{n} {unit}" + ("" if n == 1 else "s")


def format_duration(duration: str | int, texts: Mapping[str, str]) -> str:
    """A normalised duration (or a number of days) in the language of `texts`.

    Whole years stay years, other spans of 30 days or more are rounded to months
    (395 days → 13 months), shorter ones stay days.
    """
    if isinstance(duration, int):
        days = duration
        if days >= 365 and days % 365 == 0:
            n, unit = days // 365, "year"
        elif days >= 30:
            n, unit = max(1, round(days / (365.25 / 12))), "month"
        else:
            n, unit = days, "day"
    elif duration == "session":
        return texts["session"]
    else:
        number, _, unit = duration.partition(" ")
        n, unit = int(number), unit.rstrip("s")
    key = unit if n == 1 else unit + "s"
    return texts[key].replace("{n}", str(n))


# --------------------------------------------------------------------------- parsing [banner]


class _Problems:
    """Collects problems with TOML paths; converters raise ValueError/TypeError."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_type_name(value)}")
    return value


def _as_int(low: int, high: int) -> Any:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number, got {_type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return convert


def _as_text(value: object, *, limit: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_type_name(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    if _CONTROL.search(value.replace("\n", " ")):
        raise ValueError("contains control characters")
    return value


def _as_policy_url(value: object) -> str:
    if value == "":
        return ""  # no link
    text = _as_text(value, limit=2048).strip()
    if not (text.startswith("/") and not text.startswith("//")) and not re.match(r"https?://[^\s/]", text):
        raise ValueError(f"expected a path on the site (/privacy) or an http(s) URL, got {text!r}")
    if any(c.isspace() for c in text):
        raise ValueError(f"{text!r} contains whitespace")
    return text


def _as_selector(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a CSS selector string, got {_type_name(value)}")
    text = value.strip()
    if len(text) > 500:
        raise ValueError("longer than 500 characters")
    if _CONTROL.search(text) or "<" in text:
        raise ValueError(f"{text!r} is not a CSS selector")
    return text


def _read(table: Mapping[str, Any], key: str, path: str, problems: _Problems, default: Any, convert: Any) -> Any:
    if key not in table:
        return default
    try:
        return convert(table[key])
    except (ValueError, TypeError) as exc:
        problems.add(f"{path}.{key}", str(exc))
        return default


def _read_localised(value: object, path: str, problems: _Problems, languages: Collection[str]) -> Texts:
    """A string (every language) or a table `{en = "...", fr = "..."}`."""
    if isinstance(value, str):
        try:
            return (("*", _as_text(value)),)
        except (ValueError, TypeError) as exc:
            problems.add(path, str(exc))
            return ()
    if not isinstance(value, Mapping):
        problems.add(path, f'expected a string or a table of languages (en = "..."), got {_type_name(value)}')
        return ()
    out: list[tuple[str, str]] = []
    for lang, text in value.items():
        if lang not in languages:
            problems.add(f"{path}.{lang}", f"unknown language (known: {', '.join(sorted(languages))})")
            continue
        try:
            out.append((lang, _as_text(text)))
        except (ValueError, TypeError) as exc:
            problems.add(f"{path}.{lang}", str(exc))
    if not value:
        problems.add(path, "empty table: give at least one language")
    return tuple(out)


def _read_purposes(
    value: object, path: str, problems: _Problems, categories: Collection[str], languages: Collection[str]
) -> tuple[Purpose, ...]:
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables ([[banner.purpose]]), got {_type_name(value)}")
        return DEFAULT_PURPOSES
    if not value:
        problems.add(path, "empty: leave it out for one purpose per category")
        return DEFAULT_PURPOSES
    if len(value) > MAX_PURPOSES:
        problems.add(path, f"{len(value)} purposes; at most {MAX_PURPOSES}")
    purposes: list[Purpose] = []
    owner: dict[str, str] = {}
    ids: set[str] = set()
    for i, item in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.add(here, f"expected a table, got {_type_name(item)}")
            continue
        for key in item:
            if key not in ("id", "title", "description", "categories"):
                problems.add(f"{here}.{key}", "unknown key (known: id, title, description, categories)")
        pid = item.get("id")
        if not isinstance(pid, str) or not _ID.fullmatch(pid):
            problems.add(f"{here}.id", f'expected a lowercase id like "improvement" (a-z, 0-9, -), got {pid!r}')
            continue
        if pid in ids:
            problems.add(f"{here}.id", f"{pid!r} is already the id of another purpose")
        ids.add(pid)
        cats = item.get("categories")
        names: list[str] = []
        if not isinstance(cats, list) or not cats:
            problems.add(f"{here}.categories", "expected a non-empty array of category names")
        else:
            for j, cat in enumerate(cats):
                if not isinstance(cat, str) or cat not in categories:
                    known = ", ".join(sorted(categories))
                    problems.add(f"{here}.categories[{j}]", f"unknown category {cat!r} (known: {known})")
                elif cat in owner:
                    problems.add(
                        f"{here}.categories[{j}]", f"{cat!r} is already in purpose {owner[cat]!r}; a category has one"
                    )
                else:
                    owner[cat] = pid
                    names.append(cat)
        if ESSENTIAL in names and len(names) > 1:
            problems.add(
                f"{here}.categories",
                "essential is always on, so it cannot share a purpose with categories that need consent",
            )
        builtin = pid in BUILTIN_CATEGORIES
        texts: dict[str, Texts] = {}
        for f in _PURPOSE_FIELDS:
            if f in item:
                texts[f] = _read_localised(item[f], f"{here}.{f}", problems, languages)
            elif not builtin:
                problems.add(
                    f"{here}.{f}", "required (only purposes whose id is a built-in category have default texts)"
                )
        purposes.append(Purpose(pid, tuple(names), texts.get("title", ()), texts.get("description", ())))
    missing = [c for c in categories if c != ESSENTIAL and c not in owner]
    if missing:
        problems.add(
            path,
            f"categories in no purpose: {', '.join(sorted(missing))}; add each to one "
            '(otherwise "Accept all" could never grant them)',
        )
    if ESSENTIAL not in owner:
        purposes.insert(0, DEFAULT_PURPOSES[0])
    return tuple(purposes)


def _read_texts(
    value: object, path: str, problems: _Problems, allowed: frozenset[str]
) -> tuple[tuple[tuple[str, Texts], ...], tuple[str, ...]]:
    """`[banner.texts.<lang>]` tables → overrides, and the languages they make complete."""
    if not isinstance(value, Mapping):
        problems.add(path, f"expected a table of languages ([banner.texts.fr]), got {_type_name(value)}")
        return (), BUILTIN_LANGUAGES
    out: list[tuple[str, Texts]] = []
    extra: list[str] = []
    for lang, table in value.items():
        here = f"{path}.{lang}"
        if not _LANG.fullmatch(lang):
            problems.add(here, "expected a two- or three-letter lowercase language code (ISO 639)")
            continue
        if not isinstance(table, Mapping):
            problems.add(here, f"expected a table of texts, got {_type_name(table)}")
            continue
        texts: list[tuple[str, str]] = []
        for key, text in _flatten(table):
            if key not in allowed:
                problems.add(f"{here}.{key}", "unknown text key (see proxy/data/banner/i18n/en.toml)")
                continue
            try:
                text = _as_text(text)
            except (ValueError, TypeError) as exc:
                problems.add(f"{here}.{key}", str(exc))
                continue
            if key in _DURATION_KEYS and "{n}" not in text:
                problems.add(f"{here}.{key}", 'must contain "{n}" (the number)')
                continue
            texts.append((key, text))
        if lang not in BUILTIN_LANGUAGES:
            have = {k for k, _ in texts}
            missing = [k for k in TEXT_KEYS if k not in have]
            if missing:
                problems.add(
                    here,
                    f"no built-in texts for {lang!r} (built in: {', '.join(BUILTIN_LANGUAGES)}); "
                    f"give every key, missing: {', '.join(missing)}",
                )
                continue
            extra.append(lang)
        out.append((lang, tuple(texts)))
    return tuple(out), (*BUILTIN_LANGUAGES, *extra)


_BANNER_KEYS: Final = (
    "enabled",
    "policy_version",
    "lifetime_days",
    "position",
    "reopen_selector",
    "language",
    "default_language",
    "policy_url",
    "reload_on_withdrawal",
    "vendors",
    "retention",
    "purpose",
    "texts",
)


def parse_banner(
    table: Mapping[str, Any],
    *,
    categories: Collection[str] = BUILTIN_CATEGORIES,
    vendor_ids: Collection[str] = (),
    path: str = "banner",
) -> BannerSettings:
    """Validate a `[banner]` table; raise BannerError listing every problem.

    Keys (all optional; unknown keys are errors):

    - `enabled` (false): inject the banner into gated pages;
    - `policy_version` (1, whole number): raise it when the policy changes, and every
      visitor is asked again;
    - `lifetime_days` (395 = 13 months, at most 400): how long a choice is kept before
      asking again; also the cookie's max-age;
    - `position` ("bottom-left", "bottom-right" or "none"): where the persistent
      "Cookie preferences" button sits; with "none" the site provides its own link;
    - `reopen_selector` (""): a CSS selector of the site's own elements that open the
      preferences centre (links whose href ends in `#tag-gate-preferences` always do);
    - `language` ("page"): "page" (the page's `lang`, then `Accept-Language`),
      "browser" (the other way round) or a fixed language code;
    - `default_language` ("en"): when nothing matches;
    - `policy_url` (""): the site's privacy policy, linked from the banner;
    - `reload_on_withdrawal` (true): reload the page when a category is withdrawn, so
      tags that already run stop and the next response expires their cookies;
    - `vendors` ([]): catalogue or `[[vendor]]` ids listed under their purpose, with
      their description and cookies (`vendor_ids` are the known ones);
    - `retention` ({}): vendor id → how long its cookies last ("13 months", "session");
    - `[[banner.purpose]]` (one per category): `id`, `title`, `description` (a string, or
      a table of languages) and `categories`; every non-essential category must be in
      exactly one purpose, and `essential` only with itself;
    - `[banner.texts.<lang>]`: any text key of proxy/data/banner/i18n/en.toml, plus
      `purpose.<id>.title|description` and `vendor.<id>` (a vendor's description);
      a language that is not built in must give every key.
    """
    problems = _Problems()
    if not isinstance(table, Mapping):
        raise BannerError([f"{path}: expected a table, got {_type_name(table)}"])
    for key in table:
        if key not in _BANNER_KEYS:
            problems.add(f"{path}.{key}", f"unknown key (known: {', '.join(_BANNER_KEYS)})")
    d = BannerSettings()

    vendors: tuple[str, ...] = ()
    if "vendors" in table:
        raw = table["vendors"]
        if not isinstance(raw, list):
            problems.add(f"{path}.vendors", f"expected an array of vendor ids, got {_type_name(raw)}")
        else:
            seen: list[str] = []
            for i, vid in enumerate(raw):
                if not isinstance(vid, str) or vid not in vendor_ids:
                    problems.add(
                        f"{path}.vendors[{i}]", f"unknown vendor id {vid!r} (ids of the catalogue and [[vendor]])"
                    )
                elif vid in seen:
                    problems.add(f"{path}.vendors[{i}]", f"{vid!r} is listed twice")
                else:
                    seen.append(vid)
            vendors = tuple(seen)

    retention: list[tuple[str, str]] = []
    if "retention" in table:
        raw = table["retention"]
        if not isinstance(raw, Mapping):
            problems.add(f"{path}.retention", f"expected a table of vendor id = duration, got {_type_name(raw)}")
        else:
            for vid, text in raw.items():
                here = f"{path}.retention.{vid}"
                if vid not in vendors:
                    problems.add(here, "not in banner.vendors, so it would never be shown")
                    continue
                if not isinstance(text, str):
                    problems.add(here, f'expected a duration such as "13 months", got {_type_name(text)}')
                    continue
                try:
                    retention.append((vid, parse_duration(text)))
                except ValueError as exc:
                    problems.add(here, str(exc))

    # Purposes need the languages, texts need the purpose ids: read the language set
    # from the texts table first (its keys only), then both in full.
    raw_texts = table.get("texts", {})
    candidate_langs = set(BUILTIN_LANGUAGES)
    if isinstance(raw_texts, Mapping):
        candidate_langs |= {k for k in raw_texts if isinstance(k, str) and _LANG.fullmatch(k)}
    purposes = d.purposes
    if "purpose" in table:
        purposes = _read_purposes(table["purpose"], f"{path}.purpose", problems, categories, candidate_langs)
    elif any(c not in BUILTIN_CATEGORIES for c in categories):
        extra = sorted(c for c in categories if c not in BUILTIN_CATEGORIES)
        problems.add(
            f"{path}.purpose",
            f"the config adds categories ({', '.join(extra)}): group every category in [[banner.purpose]] tables",
        )
    allowed = (
        _builtin_keys()
        | {f"purpose.{p.id}.{f}" for p in purposes for f in _PURPOSE_FIELDS}
        | {f"vendor.{v}" for v in vendors}
    )
    texts, languages = _read_texts(raw_texts, f"{path}.texts", problems, allowed)
    for lang, overrides in texts:
        if lang in BUILTIN_LANGUAGES:
            continue
        keys = {k for k, _ in overrides}
        for p in purposes:
            for f in _PURPOSE_FIELDS:
                given = dict(p.title if f == "title" else p.description)
                if f"purpose.{p.id}.{f}" not in keys and lang not in given and "*" not in given:
                    problems.add(
                        f"{path}.texts.{lang}.purpose.{p.id}.{f}", "missing (no built-in text in this language)"
                    )

    def language_mode(value: object) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {_type_name(value)}")
        if value not in LANGUAGE_MODES and value not in languages:
            raise ValueError(f'expected "page", "browser" or a language ({", ".join(languages)}), got {value!r}')
        return value

    def language(value: object) -> str:
        if not isinstance(value, str) or value not in languages:
            raise ValueError(f"expected one of {', '.join(languages)}, got {value!r}")
        return value

    def position(value: object) -> str:
        if not isinstance(value, str) or value not in POSITIONS:
            raise ValueError(f"expected one of {', '.join(POSITIONS)}, got {value!r}")
        return value

    settings = BannerSettings(
        enabled=_read(table, "enabled", path, problems, d.enabled, _as_bool),
        policy_version=_read(table, "policy_version", path, problems, d.policy_version, _as_int(1, 999_999)),
        lifetime_days=_read(table, "lifetime_days", path, problems, d.lifetime_days, _as_int(1, MAX_LIFETIME_DAYS)),
        position=_read(table, "position", path, problems, d.position, position),
        reopen_selector=_read(table, "reopen_selector", path, problems, d.reopen_selector, _as_selector),
        language=_read(table, "language", path, problems, d.language, language_mode),
        default_language=_read(table, "default_language", path, problems, d.default_language, language),
        policy_url=_read(table, "policy_url", path, problems, d.policy_url, _as_policy_url),
        reload_on_withdrawal=_read(table, "reload_on_withdrawal", path, problems, d.reload_on_withdrawal, _as_bool),
        purposes=purposes,
        vendors=vendors,
        retention=tuple(retention),
        texts=texts,
        languages=tuple(languages),
    )
    if problems.items:
        raise BannerError(problems.items)
    return settings


# --------------------------------------------------------------------------- language


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an `Accept-Language` header, lowercased, best first.

    Ranges with `q=0` are dropped; equal weights keep their order; malformed entries are
    skipped (never an error). At most 32 entries are read.
    """
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.partition(";")
        tag = tag.strip()
        if not _LANG_TAG.fullmatch(tag):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
                if not math.isfinite(q):
                    q = -1.0
        if 0 < q <= 1:
            ranked.append((-q, i, tag.lower()))
    return [tag for _, _, tag in sorted(ranked)]


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


# --------------------------------------------------------------------------- the cookie


@dataclass(frozen=True, slots=True)
class ConsentCookie:
    """The native cookie as banner.js writes it: `<granted>~<version>~<time>~<id>`."""

    granted: frozenset[str]
    policy_version: int
    """0 for a value without the `~` fields (written by hand or by bridge.js)."""
    time: int
    """Unix seconds of the decision (0 when unknown)."""
    consent_id: str


def parse_consent_cookie(value: str) -> ConsentCookie:
    """Read a `tg_consent` value: granted categories joined by `.`, then optionally
    `~policy version~unix seconds~consent id`. Raises ValueError when the `~` part is
    present but malformed (the categories alone are read as `read_native` does)."""
    names, sep, rest = value.partition("~")
    granted = frozenset(n.strip().lower() for n in re.split(r"[.,|]", names) if n.strip()) - {"none"}
    if not sep:
        return ConsentCookie(granted, 0, 0, "")
    fields = rest.split("~")
    if len(fields) != 3:
        raise ValueError(f"expected granted~version~time~id, got {len(fields) + 1} fields")
    version, when, consent_id = fields
    if not version.isdigit() or len(version) > 6 or not when.isdigit() or len(when) > 12:
        raise ValueError("version and time must be whole numbers")
    if not CONSENT_ID.fullmatch(consent_id):
        raise ValueError("the consent id must be 16 to 24 characters of A-Z a-z 0-9 _ -")
    return ConsentCookie(granted, int(version), int(when), consent_id)


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


# --------------------------------------------------------------------------- the blob


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
    then the deferred script with the page's CSP nonce. Pure ASCII."""
    nonce_attr = f' nonce="{html.escape(nonce, quote=True)}"' if nonce else ""
    return (
        (
            f'<script type="application/json" id="{CONFIG_ELEMENT_ID}">{config_json}</script>'
            f'<script src="{SCRIPT_PATH}" defer{nonce_attr}></script>'
        )
        .encode("ascii", "xmlcharrefreplace")
        .decode("ascii")
    )


# --------------------------------------------------------------------------- the POST


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One proof-of-consent POST body (docs/consent-record.schema.json)."""

    consent_id: str
    policy_version: int
    granted: tuple[str, ...]
    refused: tuple[str, ...]
    page: str
    time: int
    action: Literal["accept_all", "refuse_all", "save"]


_RECORD_KEYS: Final = ("consent_id", "policy_version", "granted", "refused", "page", "time", "action")
MAX_RECORD_BYTES: Final = 8192
_ACTIONS: Final = ("accept_all", "refuse_all", "save")


def parse_consent_record(body: bytes, categories: Collection[str] = BUILTIN_CATEGORIES) -> ConsentRecord:
    """Validate a POST body from banner.js; raises ValueError naming the first problem.

    Strict, as the schema: exactly the seven keys, a consent id of 16-24 URL-safe
    characters, granted and refused disjoint lists of known non-essential categories,
    an http(s) page URL without query or fragment, whole-number version and time.
    """
    if len(body) > MAX_RECORD_BYTES:
        raise ValueError(f"body larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if set(data) != set(_RECORD_KEYS):
        missing = sorted(set(_RECORD_KEYS) - set(data))
        extra = sorted(set(data) - set(_RECORD_KEYS))
        raise ValueError(f"keys differ from the schema: missing {missing}, unknown {extra}")
    consent_id = data["consent_id"]
    if not isinstance(consent_id, str) or not CONSENT_ID.fullmatch(consent_id):
        raise ValueError("consent_id: expected 16 to 24 characters of A-Z a-z 0-9 _ -")
    for name in ("policy_version", "time"):
        if isinstance(data[name], bool) or not isinstance(data[name], int) or data[name] < (name == "policy_version"):
            raise ValueError(f"{name}: expected a whole number")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("granted", "refused"):
        items = data[name]
        if not isinstance(items, list) or not all(isinstance(c, str) and _CATEGORY_NAME.fullmatch(c) for c in items):
            raise ValueError(f"{name}: expected an array of category names")
        if len(set(items)) != len(items):
            raise ValueError(f"{name}: a category is listed twice")
        unknown = [c for c in items if c not in categories or c == ESSENTIAL]
        if unknown:
            raise ValueError(f"{name}: not a category that needs consent: {', '.join(unknown)}")
        lists[name] = tuple(items)
    if set(lists["granted"]) & set(lists["refused"]):
        raise ValueError("a category is both granted and refused")
    page = data["page"]
    if not isinstance(page, str) or len(page) > 2048 or not re.fullmatch(r"https?://[^\s?#]+", page):
        raise ValueError("page: expected an http(s) URL without query or fragment")
    action = data["action"]
    if action not in _ACTIONS:
        raise ValueError(f"action: expected one of {', '.join(_ACTIONS)}")
    return ConsentRecord(
        consent_id=consent_id,
        policy_version=data["policy_version"],
        granted=lists["granted"],
        refused=lists["refused"],
        page=page,
        time=data["time"],
        action=action,
    )
