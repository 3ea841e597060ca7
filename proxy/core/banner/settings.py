"""The `[banner]` table: `parse_banner` validates it into a frozen, hashable `BannerSettings`.

Every problem is reported with its TOML path, all at once (`BannerError`, merged by
`proxy.core.config` into its own report). Texts are checked against the built-in keys
(`proxy.core.banner.texts`); a language that is not built in must give every key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..categories import BUILTIN_CATEGORIES, ESSENTIAL
from ..reader import parse_size
from .texts import (
    BUILTIN_LANGUAGES,
    DURATION_KEYS,
    PURPOSE_FIELDS,
    TEXT_KEYS,
    BannerError,
    builtin_keys,
    flatten,
    parse_duration,
)

DEFAULT_LIFETIME_DAYS: Final = 395
"""13 months, the usual regulators' ceiling for how long a consent choice is kept."""
MAX_LIFETIME_DAYS: Final = 400
"""Browsers cap a cookie's lifetime at 400 days (RFC 6265bis); a longer one is not kept."""
POSITIONS: Final = ("bottom-left", "bottom-right", "none")
LANGUAGE_MODES: Final = ("page", "browser")
MAX_PURPOSES: Final = 20
MAX_TEXT_LENGTH: Final = 2000
PROOF_SINKS: Final = ("stdout", "file", "off")
MIN_SALT_LENGTH: Final = 16
DEFAULT_PROOF_MAX_SIZE: Final = 16 << 20
_ID: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LANG: Final = re.compile(r"[a-z]{2,3}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


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
    proof_sink: Literal["stdout", "file", "off"] = "stdout"
    """Where proof-of-consent lines go: stdout, a rotated file, or nowhere."""
    proof_file: str = ""
    proof_max_size: int = DEFAULT_PROOF_MAX_SIZE
    """Bytes after which the proof file is rotated (`<file>.1`, `.2`, ...)."""
    proof_keep: int = 10
    """Rotated proof files kept besides the current one."""
    proof_salt: str = field(default="", repr=False)
    """Secret mixed into the hash of the visitor's address and user agent."""
    proof_rate: int = 30
    """Proof-of-consent POSTs accepted per client address per minute."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The non-essential categories the banner asks about, in purpose order."""
        return tuple(c for p in self.purposes for c in p.categories if c != ESSENTIAL)


def _bad(problems: _Problems, where: str) -> bool:
    """Whether a problem is already reported at `where` (one problem per key)."""
    return any(p.startswith(f"{where}: ") for p in problems.items)


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
        for f in PURPOSE_FIELDS:
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
        for key, text in flatten(table):
            if key not in allowed:
                problems.add(f"{here}.{key}", "unknown text key (see proxy/data/banner/i18n/en.toml)")
                continue
            try:
                text = _as_text(text)
            except (ValueError, TypeError) as exc:
                problems.add(f"{here}.{key}", str(exc))
                continue
            if key in DURATION_KEYS and "{n}" not in text:
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
    "proof_sink",
    "proof_file",
    "proof_max_size",
    "proof_keep",
    "proof_salt",
    "proof_rate",
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
      a language that is not built in must give every key;
    - `proof_sink` ("stdout"): where proof-of-consent lines go: "stdout", "file" or "off";
    - `proof_file` (""): the file, with `proof_sink = "file"` (required then);
    - `proof_max_size` ("16MiB", at least 64KiB) and `proof_keep` (10): the file is
      rotated past that size and that many old files are kept;
    - `proof_salt` (""): the secret mixed into the hash of the visitor's address and
      user agent, at least 16 characters; required when the banner is enabled and
      proof lines are written (an unsalted hash of an IPv4 address is reversed by
      trying them all);
    - `proof_rate` (30): proof POSTs accepted per client address per minute.
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
        builtin_keys()
        | {f"purpose.{p.id}.{f}" for p in purposes for f in PURPOSE_FIELDS}
        | {f"vendor.{v}" for v in vendors}
    )
    texts, languages = _read_texts(raw_texts, f"{path}.texts", problems, allowed)
    for lang, overrides in texts:
        if lang in BUILTIN_LANGUAGES:
            continue
        keys = {k for k, _ in overrides}
        for p in purposes:
            for f in PURPOSE_FIELDS:
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

    def proof_sink(value: object) -> str:
        if not isinstance(value, str) or value not in PROOF_SINKS:
            raise ValueError(f"expected one of {', '.join(PROOF_SINKS)}, got {value!r}")
        return value

    def file_path(value: object) -> str:
        if value == "":
            return ""  # not set
        text = _as_text(value, limit=4096)
        if text != text.strip() or "\n" in text:
            raise ValueError(f"{text!r}: leading or trailing spaces, or a line break, in a file name")
        return text

    def max_size(value: object) -> int:
        size = parse_size(value)
        if size < 64 << 10:
            raise ValueError(f"at least 64KiB, got {value!r}")
        return size

    def salt(value: object) -> str:
        if value == "":
            return ""  # not set
        text = _as_text(value, limit=1024)
        if len(text) < MIN_SALT_LENGTH:
            raise ValueError(f"at least {MIN_SALT_LENGTH} characters (a random secret, e.g. `openssl rand -hex 16`)")
        return text

    enabled = _read(table, "enabled", path, problems, d.enabled, _as_bool)
    sink = _read(table, "proof_sink", path, problems, d.proof_sink, proof_sink)
    proof_file = _read(table, "proof_file", path, problems, d.proof_file, file_path)
    proof_salt = _read(table, "proof_salt", path, problems, d.proof_salt, salt)
    if sink == "file" and not proof_file:
        problems.add(f"{path}.proof_file", 'required with proof_sink = "file"')
    if enabled and sink != "off" and not proof_salt and not _bad(problems, f"{path}.proof_salt"):
        problems.add(
            f"{path}.proof_salt",
            f'required with proof_sink = "{sink}": a secret of at least {MIN_SALT_LENGTH} characters, the same on '
            'every replica (e.g. `openssl rand -hex 16`); or proof_sink = "off"',
        )

    settings = BannerSettings(
        enabled=enabled,
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
        proof_sink=sink,
        proof_file=proof_file,
        proof_max_size=_read(table, "proof_max_size", path, problems, d.proof_max_size, max_size),
        proof_keep=_read(table, "proof_keep", path, problems, d.proof_keep, _as_int(1, 100)),
        proof_salt=proof_salt,
        proof_rate=_read(table, "proof_rate", path, problems, d.proof_rate, _as_int(1, 10_000)),
    )
    if problems.items:
        raise BannerError(problems.items)
    return settings
