"""The banner's built-in texts, durations in words, and `Accept-Language` (pure).

Texts for en, fr, de, es, it and nl are data, `proxy/data/banner/i18n/<lang>.toml`,
read once by `load_builtin_texts` (a missing or incomplete file is a packaging mistake,
reported as a `BannerError`). `TEXT_KEYS` is the set every language has; operators
override any of them per language in `[banner.texts.<lang>]` (`proxy.core.banner.settings`).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Final

from ..categories import BUILTIN_CATEGORIES

BUILTIN_LANGUAGES: Final = ("en", "fr", "de", "es", "it", "nl")

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

DURATION_KEYS: Final = ("day", "days", "month", "months", "year", "years")
PURPOSE_FIELDS: Final = ("title", "description")
_DURATION: Final = re.compile(r"\s*([0-9]{1,4})\s+(day|days|month|months|year|years)\s*")
_LANG_TAG: Final = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*")


class BannerError(ValueError):
    """One or more problems in a `[banner]` table, each prefixed with its TOML path.

    `problems` holds every problem found, so `proxy.core.config` can merge them into its
    own report.
    """

    problems: tuple[str, ...]

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested TOML tables as (dotted key, value) pairs: `purpose.analytics.title`."""
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def builtin_keys() -> frozenset[str]:
    """Every key a built-in language file has: `TEXT_KEYS` and the built-in purposes'."""
    purposes = {f"purpose.{c}.{f}" for c in BUILTIN_CATEGORIES for f in PURPOSE_FIELDS}
    return frozenset(TEXT_KEYS) | purposes


@cache
def load_builtin_texts() -> Mapping[str, Mapping[str, str]]:
    """The package's texts, `{language: {flattened key: text}}`, read once per process.

    Raises BannerError when a file is missing, not TOML, or its keys differ from the
    expected set: a packaging mistake, reported rather than shown half-translated.
    """
    folder = resources.files("proxy") / "data" / "banner" / "i18n"
    expected = builtin_keys()
    out: dict[str, Mapping[str, str]] = {}
    problems: list[str] = []
    for lang in BUILTIN_LANGUAGES:
        name = f"banner/i18n/{lang}.toml"
        try:
            data = tomllib.loads((folder / f"{lang}.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        texts = dict(flatten(data))
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
