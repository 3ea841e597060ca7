"""The Open Cookie Database: a second, lower-priority source of cookie names (pure).

`data/ocd/open-cookie-database.json` is written by tools/import_ocd.py from the
database's CSV (Apache-2.0, licence shipped beside it), with our category for each
name. Its names become cookie-only vendors, one per platform and category, which a
`Catalog` asks only for names no catalogue vendor claims (`cookie_fallback`). The one
piece of IO is reading the shipped file, once, in `load_ocd_vendors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from functools import cache
from importlib import resources
from typing import Final

from .categories import BUILTIN_CATEGORIES
from .vendors import COOKIE_FORBIDDEN, Vendor, VendorError, parse_cookie_pattern, slug, toml_type

__all__ = ["OCD_CATEGORIES", "OCD_REPOSITORY", "load_ocd_vendors", "parse_ocd"]

OCD_REPOSITORY: Final = "https://github.com/jkwakman/Open-Cookie-Database"
OCD_CATEGORIES: Final = ("Analytics", "Marketing", "Functional", "Necessary", "Security", "Personalization")
"""The categories the Open Cookie Database uses (its own words)."""


def parse_ocd(data: object, categories: Collection[str]) -> tuple[Vendor, ...]:
    """Validate the shipped Open Cookie Database file (written by tools/import_ocd.py)
    and return its names as cookie-only vendors, one per platform and category.

    `data` is the decoded JSON: `meta` (with the source `commit`) and `cookies`, rows
    of `[pattern, platform, ocd_category, category]` where `pattern` is an exact
    name or a `*` pattern and `category` is ours after the import decisions, or
    null for a name left out. Vendor ids are `ocd-<platform>-<category>`. Raises
    ValueError naming the first bad row.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {toml_type(data)}")
    meta, rows = data.get("meta"), data.get("cookies")
    if not isinstance(meta, dict) or not isinstance(meta.get("commit"), str):
        raise ValueError("meta: expected an object with the source 'commit'")
    if not isinstance(rows, list):
        raise ValueError("cookies: expected an array")
    source = f"{OCD_REPOSITORY}/blob/{meta['commit']}/open-cookie-database.csv"
    grouped: dict[str, tuple[str, str, list[str]]] = {}
    ids: dict[tuple[str, str], str] = {}
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise ValueError(f"cookies[{i}]: expected [pattern, platform, ocd_category, category], got {row!r}")
        pattern, platform, ocd_category, category = row
        if ocd_category not in OCD_CATEGORIES:
            raise ValueError(f"cookies[{i}]: unknown Open Cookie Database category {ocd_category!r}")
        if category is None:
            continue
        if not (isinstance(pattern, str) and isinstance(platform, str)):
            raise ValueError(f"cookies[{i}]: expected [pattern, platform, ocd_category, category], got {row!r}")
        if category not in categories:
            raise ValueError(f"cookies[{i}]: unknown category {category!r}")
        if _ocd_name_is_bad(pattern):
            try:  # for the message; both raise on every name _ocd_name_is_bad refuses
                parse_cookie_pattern(pattern) if "*" in pattern else _parse_ocd_name(pattern)
            except ValueError as exc:
                raise ValueError(f"cookies[{i}]: {exc}") from None
        key = (platform, category)
        vendor_id = ids.get(key)
        if vendor_id is None:
            vendor_id = ids[key] = f"ocd-{slug(platform) or 'unnamed'}-{category}"
        grouped.setdefault(vendor_id, (platform or "unnamed platform", category, []))[2].append(pattern)
    return tuple(
        Vendor(
            id=vendor_id,
            name=f"{platform} (Open Cookie Database)",
            category=category,
            cookies=tuple(dict.fromkeys(cookies)),
            description=f"Cookies the Open Cookie Database lists for {platform}.",
            source=source,
        )
        for vendor_id, (platform, category, cookies) in grouped.items()
    )


_REGEX_CHAR: Final = re.compile(r"[][?{}()|^$+\\]")


def _ocd_name_is_bad(pattern: str) -> bool:
    """What parse_cookie_pattern refuses in a pattern, or _parse_ocd_name in an exact
    name, in two regex scans instead of a loop per character (2,000 names per load)."""
    if not pattern or COOKIE_FORBIDDEN.search(pattern) is not None:
        return True
    return "*" in pattern and (_REGEX_CHAR.search(pattern) is not None or not pattern.strip("*"))


def _parse_ocd_name(text: str) -> str:
    # Exact names are looked up as they are, so brackets and the like may stay.
    if not text:
        raise ValueError("empty cookie name")
    bad = COOKIE_FORBIDDEN.search(text)
    if bad is not None:
        raise ValueError(f"{text!r} has {bad.group()!r}, which cannot appear in a cookie name")
    return text


@cache
def load_ocd_vendors() -> tuple[Vendor, ...]:
    """The package's `data/ocd/open-cookie-database.json` as vendors, once per process.

    Raises VendorError when the shipped file is missing or malformed.
    """
    path = resources.files("proxy") / "data" / "ocd" / "open-cookie-database.json"
    try:
        return parse_ocd(json.loads(path.read_text(encoding="utf-8")), BUILTIN_CATEGORIES)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VendorError([f"ocd/open-cookie-database.json: {exc}"]) from None
