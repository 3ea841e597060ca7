"""Catalogue URL entries: the part of a host a vendor owns by path and query (pure).

A vendor's `urls` entry is `host/path` or `host/path?param=glob`. The host is a
catalogue host (it matches its subdomains, validated by `vendors.parse_host`); this
module validates and compiles the rest and is the one place that decides whether a
URL's path and query satisfy an entry (`UrlEntry.matches`). `Catalog` orders the
entries and looks them up; the runtime guard (data/public/guard.js) carries the same
entries as text and matches them the same way (tests/data/url_decisions.json is the
shared proof).

- The path is a prefix matched segment-wise: `/tr` matches `/tr` and `/tr/x`, not
  `/track`; a path ending in `/` matches what is under it (`/` alone, only with a query
  condition: every path). `*` in the path matches any
  run of characters inside one segment (`/*/sdk.js` matches `/en_US/sdk.js`).
  Case-sensitive, compared with the path as the browser requests it (dot segments
  resolved, not percent-decoded).
- The query condition holds when any value of the parameter (a repeated parameter has
  several) matches the glob, where `*` is any run of characters, including none. Name
  and value are compared after decoding as the browser's `URLSearchParams` decodes them
  (`%2D` is `-`, `+` a space), so both are written decoded. Case-sensitive. One
  condition per entry; `?id=*` asks only that the parameter is present.

At one host, entries are tried longest path first (as written, `*` included); at the
same path length an entry with a query condition before one without; then the later
vendor first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .url import parse_query, path_under, url_query

__all__ = ["UrlEntry", "glob_regex", "make_url_entry", "make_url_gate", "parse_path_condition", "path_pattern"]

# Printable ASCII the URL standard percent-encodes in a path (so the guard, which sees
# the browser's `pathname`, would never meet them as written); `^` joined the set in
# 2023 and not every browser encodes it yet, so it is refused either way.
_PATH_ENCODED: Final = frozenset('"<>^`{}')
_PARAM_FORBIDDEN: Final = re.compile(r"[\s&=#*\x00-\x1f\x7f]")


def glob_regex(pattern: str, star: str = ".*") -> str:
    """A regex source matching `pattern` exactly, `*` becoming `star`."""
    return star.join(re.escape(part) for part in pattern.split("*"))


def parse_path_condition(text: str) -> str:
    """Validate what follows the host in a URL entry, `/path` or `/path?param=glob`, and
    return it unchanged. Raises ValueError naming exactly what is wrong."""
    path, question, condition = text.partition("?")
    if path in ("", "/") and not question:
        raise ValueError("no path; a host alone goes in 'hosts'")
    for ch in path:
        if ch == "#":
            raise ValueError("'#' starts a fragment, which the browser never sends; the path may not hold one")
        if ch == "\\":
            raise ValueError("the path may not hold a backslash (the browser reads it as '/')")
        if ch.isspace():
            raise ValueError("the path may not hold whitespace")
        if ch in _PATH_ENCODED or not ch.isascii() or not ch.isprintable():
            encoded = "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
            raise ValueError(f"the path holds {ch!r}, which the browser sends percent-encoded: write {encoded!r}")
    if "//" in path:
        raise ValueError("empty path segment ('//')")
    if not question:
        return text
    param, equals, glob = condition.partition("=")
    if not equals:
        raise ValueError(
            f"the query condition {'?' + condition!r} has no '='; write '?{condition or 'name'}=*' to ask for"
            " the parameter with any value"
        )
    if not param:
        raise ValueError("the query condition has no parameter name ('?=...')")
    bad = _PARAM_FORBIDDEN.search(param)
    if bad is not None:
        raise ValueError(f"the parameter name {param!r} has {bad.group()!r} (names are literal, written decoded)")
    if "&" in glob:
        raise ValueError(f"the query condition {glob!r} has '&': an entry takes one condition (one parameter)")
    if "#" in glob:
        raise ValueError(f"the query condition {glob!r} has '#', which would start a fragment")
    if not glob.isprintable():
        raise ValueError(f"the query condition {glob!r} has a control character")
    return text


@dataclass(frozen=True, slots=True)
class UrlEntry:
    """One compiled URL entry. `path` is the path as written (a segment-wise prefix,
    `*` within a segment); `param`/`glob` the query condition, or None."""

    host: str
    path: str
    param: str | None
    glob: str | None
    path_regex: re.Pattern[str] | None
    value_regex: re.Pattern[str] | None

    @property
    def text(self) -> str:
        """The entry as written in the catalogue (host normalised)."""
        return f"{self.host}{self.path}" + ("" if self.param is None else f"?{self.param}={self.glob}")

    def matches_path(self, path: str) -> bool:
        """Whether a request path (as `url.url_path` gives it) is under this entry's path."""
        if self.path_regex is not None:
            return self.path_regex.match(path) is not None
        return path_under(path, self.path)

    def matches_query(self, params: Mapping[str, list[str]]) -> bool:
        """Whether the query condition holds for a URL's parameters (as `url.parse_query`
        gives them); True when the entry has none."""
        if self.param is None or self.value_regex is None:
            return True
        fullmatch = self.value_regex.fullmatch
        return any(fullmatch(value) is not None for value in params.get(self.param, ()))

    def matches(self, url: str, path: str) -> bool:
        """Whether `url`, whose path is `path`, satisfies the entry (its host aside)."""
        return self.matches_path(path) and (self.param is None or self.matches_query(parse_query(url_query(url))))


def make_url_entry(text: str) -> UrlEntry:
    """Compile a URL entry already validated (`vendors.parse_host_path`)."""
    host, slash, rest = text.partition("/")
    path, question, condition = ("/" + rest).partition("?")
    param: str | None = None
    glob: str | None = None
    value_regex: re.Pattern[str] | None = None
    if question:
        param, _, glob = condition.partition("=")
        value_regex = re.compile(glob_regex(glob), re.DOTALL)
    path_regex: re.Pattern[str] | None = None
    if "*" in path:
        path_regex = re.compile(path_pattern(path), re.DOTALL)
    return UrlEntry(host=host, path=path, param=param, glob=glob, path_regex=path_regex, value_regex=value_regex)


def path_pattern(path: str, *, ends: str = "/") -> str:
    """A regex source matching (with `re.match`) the paths under the entry path `path`.

    `ends` are the characters a path segment cannot hold: "/" for a path as `url_path`
    gives it; "/?#" to match the path inside a URL, where the query or fragment ends it.
    A prefix not ending in `/` ends at a segment boundary: next is `/` or nothing.
    """
    chars = "[^" + re.escape(ends) + "]"
    return glob_regex(path, chars + "*") + ("" if path.endswith("/") else f"(?!{chars})")


def make_url_gate(paths: list[str]) -> re.Pattern[str] | None:
    """A regex that `re.match`es every absolute URL whose path (as written, up to the
    query or fragment) some of `paths` (entry paths of one host) matches, and no other;
    None when every URL must be checked (an entry for every path, `/`).

    It spares a lookup the `url_path` call for the usual URL of a listed host whose path
    no entry lists. It reads the path as written: a URL whose path the browser rewrites
    before requesting it (`url.path_rewritten`) must be checked whatever it answers.
    """
    if "/" in paths:
        return None
    alternatives = "|".join(path_pattern(p, ends="/?#") for p in sorted(set(paths)))
    return re.compile(f"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*(?:{alternatives})", re.DOTALL)
