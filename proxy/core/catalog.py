"""The vendor catalogue: which third party a host, URL, cookie or inline script belongs to.

Pure: standard library only. A `Catalog` compiles the lookups of a sequence of vendors
(`proxy.core.vendors` validates them) when it is built, so a lookup per request costs a
dict probe or one regex scan; `make_catalog` is the built-in catalogue plus operator
vendors, with the Open Cookie Database (`proxy.core.ocd`) as the cookie fallback.

Lookups are by host, and by host, path and query where a host is shared: one host
belongs to one vendor, and where several services share it (`www.google.com`
serves reCAPTCHA, Maps embeds and ad beacons; gtag.js on www.googletagmanager.com
serves Analytics or Ads by its `?id=`), their well-known paths are listed as
`urls` (`www.google.com/recaptcha/`, `googletagmanager.com/gtag/js?id=AW-*`), which
win over the host's own entry; the rest of such a host is left to the site's own
rules. How an entry meets a URL, and in which order entries are tried, is
`proxy.core.url_entries`'s contract; this module is the one lookup the gate, the
`Link` filter, `explain` and `catalogue` use (the runtime guard's table carries the
same entries).

The vendor validators, the catalogue file reader, the OCD loader and the URL parsers
used to live here and are still importable from this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from .catalog_files import load_builtin_catalog, load_builtin_vendors, read_catalog
from .memo import Memo
from .ocd import OCD_REPOSITORY, load_ocd_vendors, parse_ocd
from .url import host_of, parse_query, path_rewritten, url_path, url_query
from .url_entries import UrlEntry, make_url_entry, make_url_gate
from .vendors import (
    CatalogMeta,
    Vendor,
    VendorError,
    parse_catalog,
    parse_cookie_pattern,
    parse_host,
    parse_host_path,
    parse_inline_signature,
    parse_source,
    parse_vendor,
    parse_vendors,
)

__all__ = [
    "OCD_REPOSITORY",
    "Catalog",
    "CatalogMeta",
    "Vendor",
    "VendorError",
    "host_of",
    "load_builtin_catalog",
    "load_builtin_vendors",
    "load_ocd_vendors",
    "make_catalog",
    "parse_catalog",
    "parse_cookie_pattern",
    "parse_host",
    "parse_host_path",
    "parse_inline_signature",
    "parse_ocd",
    "parse_source",
    "parse_vendor",
    "parse_vendors",
    "read_catalog",
    "url_path",
]

_CACHE_LIMIT: Final = 8192
_CACHE_BYTES: Final = 2 << 20
# Inline scripts are memoised only up to this length: tracker snippets are small
# and identical on every page of a site, while large scripts are mostly unique.
_INLINE_CACHE_TEXT: Final = 4096
_INLINE_CACHE_LIMIT: Final = 1024
_INLINE_CACHE_BYTES: Final = 4 << 20


def _glob_regex(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


@dataclass(frozen=True, slots=True)
class _CookieIndex:
    """Compiled cookie names of some vendors (a later vendor wins a name).

    Exact names are a dict. Patterns whose only `*` ends them (nearly all) are a
    dict of their prefixes, probed from the longest prefix length down, so that
    building costs no regex compilation; the other patterns are one regex
    alternation, most literal first. Across the two, the pattern with the most
    literal characters wins, ties going to the pattern that sorts first.
    """

    exact: dict[str, Vendor]
    prefixes: dict[str, Vendor]
    lengths: tuple[int, ...]
    patterns: tuple[tuple[str, Vendor], ...]
    regex: re.Pattern[str] | None

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes or self.patterns)

    def match_pattern(self, name: str) -> tuple[str, Vendor] | None:
        """The most literal pattern matching `name` (exact names aside) and its vendor."""
        found: Vendor | None = None
        found_prefix = ""
        size = len(name)
        for n in self.lengths:
            if n <= size:
                found = self.prefixes.get(name[:n])
                if found is not None:
                    found_prefix = name[:n]
                    break
        if self.regex is not None:
            m = self.regex.fullmatch(name)
            if m is not None and m.lastindex is not None:
                pattern, vendor = self.patterns[m.lastindex - 1]
                literal = len(pattern) - pattern.count("*")
                if found is None or (literal, found_prefix + "*") > (len(found_prefix), pattern):
                    return pattern, vendor
        return None if found is None else (found_prefix + "*", found)

    def entry(self, name: str) -> tuple[str, Vendor] | None:
        """The exact name or pattern owning `name`, and its vendor."""
        vendor = self.exact.get(name)
        return (name, vendor) if vendor is not None else self.match_pattern(name)


def _cookie_index(vendors: Iterable[Vendor]) -> _CookieIndex:
    exact: dict[str, Vendor] = {}
    prefixes: dict[str, Vendor] = {}
    patterns: dict[str, Vendor] = {}
    for vendor in vendors:
        for cookie in vendor.cookies:
            if "*" not in cookie:
                exact[cookie] = vendor
            elif cookie.find("*") == len(cookie) - 1:
                prefixes[cookie[:-1]] = vendor
            else:
                patterns[cookie] = vendor
    # Most specific first: the alternation tries patterns in order, so the
    # pattern with the most literal characters wins (`_ga_*` before `_g*`).
    ordered = sorted(patterns, key=lambda p: (-len(p.replace("*", "")), p))
    return _CookieIndex(
        exact=exact,
        prefixes=prefixes,
        lengths=tuple(sorted({len(p) for p in prefixes}, reverse=True)),
        patterns=tuple((p, patterns[p]) for p in ordered),
        regex=re.compile("|".join(f"({_glob_regex(p)})" for p in ordered), re.DOTALL) if ordered else None,
    )


_Hit: TypeAlias = tuple[str, Vendor]
"""A lookup's answer: the entry that decided (host suffix or URL entry text) and its vendor."""
_UrlRow: TypeAlias = tuple[str, "re.Pattern[str] | None", "str | None", "re.Pattern[str] | None", _Hit]
"""A URL entry as `Catalog._lookup` reads it: path, path regex, query parameter and value regex, hit."""


def _url_table(
    urls: Iterable[tuple[int, UrlEntry, Vendor]],
) -> dict[str, tuple[re.Pattern[str] | None, tuple[_UrlRow, ...]]]:
    """URL entries by host, in the order they are tried: longest path first (as
    written), at equal length a query condition first, then the later vendor; with the
    host's gate (`url_entries.make_url_gate`), which most URLs of the host fail."""
    by_host: dict[str, list[tuple[int, UrlEntry, Vendor]]] = {}
    for item in urls:
        by_host.setdefault(item[1].host, []).append(item)
    table: dict[str, tuple[re.Pattern[str] | None, tuple[_UrlRow, ...]]] = {}
    for host, items in by_host.items():
        items.sort(key=lambda pev: (-len(pev[1].path), pev[1].param is None, -pev[0]))
        rows = tuple((e.path, e.path_regex, e.param, e.value_regex, (e.text, v)) for _, e, v in items)
        table[host] = (make_url_gate([e.path for _, e, _ in items]), rows)
    return table


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching exactly the given literals, longest first at a position.

    A plain alternation of hundreds of literals makes the regex engine try every
    alternative at every position; a trie shares prefixes, so each position costs
    about one character comparison per trie level reached. The trie is built as a
    radix tree over the sorted words (a node per branching point, not per character),
    so building it costs a few steps per word.
    """
    ordered = sorted(set(words))

    def emit(lo: int, hi: int, depth: int) -> str:
        # ordered[lo:hi] all start with the same `depth` characters.
        branches: list[str] = []
        ends = False
        i = lo
        while i < hi:
            word = ordered[i]
            if len(word) == depth:
                ends = True  # sorted: the word that ends here comes first
                i += 1
                continue
            ch = word[depth]
            j = i + 1
            while j < hi and ordered[j][depth] == ch:
                j += 1
            # The common prefix of a sorted run is that of its first and last words.
            last, k = ordered[j - 1], depth + 1
            while k < len(word) and k < len(last) and word[k] == last[k]:
                k += 1
            branches.append(re.escape(word[depth:k]) + emit(i, j, k))
            i = j
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # A word ends here: the optional group is greedy, so longer words win.
        return f"(?:{body})?" if ends else body

    return emit(0, len(ordered), 0)


class Catalog:
    """Compiled lookups over a sequence of vendors.

    Later vendors override earlier ones with the same id (operator vendors come
    after the built-ins), and the overriding vendor takes the later position. When
    two different vendors claim the same host, cookie, inline signature or service
    key, the later one wins. `cookie_fallback` vendors (the Open Cookie Database)
    answer cookie lookups only, and only for names no vendor in `vendors` claims;
    they take no part in `vendors`, `vendor()` or any other lookup. Everything is
    compiled in the constructor; lookups never raise. Instances are not hashable
    values but are safe to share: the only mutable state is bounded memo caches.
    """

    __slots__ = (
        "_by_id",
        "_cookie_cache",
        "_cookie_exact",
        "_cookie_fallback",
        "_cookies",
        "_hosts",
        "_inline",
        "_inline_cache",
        "_inline_regex",
        "_names",
        "_paths",
        "_services",
        "_url_cache",
        "_vendors",
    )

    def __init__(self, vendors: Iterable[Vendor], *, cookie_fallback: Iterable[Vendor] = ()) -> None:
        by_id: dict[str, Vendor] = {}
        for vendor in vendors:
            by_id.pop(vendor.id, None)
            by_id[vendor.id] = vendor
        self._by_id = by_id
        self._vendors = tuple(by_id.values())
        hosts: dict[str, _Hit] = {}
        inline: dict[str, Vendor] = {}
        services: dict[str, Vendor] = {}
        names: dict[str, Vendor] = {}
        urls: dict[str, tuple[int, UrlEntry, Vendor]] = {}
        for position, vendor in enumerate(self._vendors):
            for host in vendor.hosts:
                hosts[host.lower()] = (host.lower(), vendor)
            for text in vendor.urls:
                urls[text] = (position, make_url_entry(text), vendor)  # a later vendor wins
            for signature in vendor.inline:
                inline[signature] = vendor
            for service in vendor.services:
                services[service.casefold()] = vendor
            names.setdefault(vendor.id.casefold(), vendor)
            names.setdefault(vendor.name.casefold(), vendor)
        self._hosts = hosts
        self._paths = _url_table(urls.values())
        self._cookies = _cookie_index(self._vendors)
        self._cookie_exact = self._cookies.exact
        self._cookie_fallback = _cookie_index(cookie_fallback) or None
        self._inline = inline
        self._inline_regex = re.compile(_trie_regex(inline)) if inline else None
        self._services = services
        self._names = names
        self._url_cache: Memo[str, Vendor | None] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._cookie_cache: Memo[str, Vendor | None] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._inline_cache: Memo[str, Vendor | None] = Memo(_INLINE_CACHE_LIMIT, _INLINE_CACHE_BYTES)

    @property
    def vendors(self) -> tuple[Vendor, ...]:
        """Every vendor after overrides, in effective order."""
        return self._vendors

    def vendor(self, vendor_id: str) -> Vendor | None:
        """The vendor with this id, or None."""
        return self._by_id.get(vendor_id)

    def vendor_for_host(self, host: str) -> Vendor | None:
        """The vendor owning `host` or its closest listed parent domain, or None.

        Matching is on label boundaries (`www.example.com` matches `example.com`,
        `badexample.com` does not) and the longest listed suffix wins. The host is
        lowercased and stripped of leading/trailing dots first (so a cookie
        `Domain=.example.com` works); it should otherwise be as `host_of` returns it.
        URL entries (`urls`) take no part: there is no path.
        """
        hit = self._lookup(host, None)
        return None if hit is None else hit[1]

    def vendor_for_location(self, host: str, url: str) -> Vendor | None:
        """The vendor serving `url`, whose host is `host` (as `host_of` returns it).

        Like `vendor_for_host`, but at each suffix of the host, from the longest, a
        listed URL entry the URL satisfies wins over the host entry
        (`www.facebook.com/tr` is the Meta Pixel, the rest of facebook.com is social);
        entries are tried in the order `proxy.core.url_entries` describes.
        """
        hit = self._lookup(host, url if self._paths else None)
        return None if hit is None else hit[1]

    def entry_for_location(self, host: str, url: str | None) -> tuple[str, Vendor] | None:
        """The catalogue entry deciding `url` on `host` (None: the host alone), as the
        entry's text (a host suffix or a URL entry) and its vendor; what
        `vendor_for_location` answers, with the reason."""
        return self._lookup(host, url if self._paths else None)

    def _lookup(self, host: str, url: str | None) -> _Hit | None:
        host = host.lower().strip(".")
        hosts = self._hosts
        paths = self._paths if url is not None else None
        path: str | None = None
        query: dict[str, list[str]] | None = None
        i = 0
        while True:
            suffix = host[i:] if i else host
            if paths is not None and url is not None:
                entries = paths.get(suffix)
                if entries is not None and (
                    entries[0] is None or entries[0].match(url) is not None or path_rewritten(url)
                ):
                    if path is None:
                        path = url_path(url)
                    for prefix, pattern, param, values, hit in entries[1]:
                        if pattern is None:
                            if not path.startswith(prefix) or not (
                                prefix[-1] == "/" or len(path) == len(prefix) or path[len(prefix)] == "/"
                            ):
                                continue
                        elif pattern.match(path) is None:
                            continue
                        if values is None or param is None:
                            return hit
                        if query is None:
                            query = parse_query(url_query(url))
                        for value in query.get(param, ()):
                            if values.fullmatch(value) is not None:
                                return hit
            found = hosts.get(suffix)
            if found is not None:
                return found
            i = host.find(".", i) + 1
            if i == 0:
                return None

    def vendor_for_url(self, url: str) -> Vendor | None:
        """`vendor_for_location(host_of(url), url)`; None for relative and non-http URLs. Memoised."""
        cache = self._url_cache
        try:
            return cache.table[url]
        except KeyError:
            pass
        host = host_of(url)
        return cache.put(url, None if host is None else self.vendor_for_location(host, url), len(url))

    def vendor_for_cookie(self, name: str) -> Vendor | None:
        """The vendor owning a cookie name: an exact name beats any pattern, then the
        pattern with the most literal characters wins; only when no vendor claims
        the name are the `cookie_fallback` vendors asked, by the same rules.
        Case-sensitive. Memoised."""
        vendor = self._cookie_exact.get(name)
        if vendor is not None:
            return vendor
        cache = self._cookie_cache
        try:
            return cache.table[name]
        except KeyError:
            pass
        hit = self._cookies.match_pattern(name)
        fallback = self._cookie_fallback
        if hit is None and fallback is not None:
            hit = fallback.entry(name)
        return cache.put(name, None if hit is None else hit[1], len(name))

    def entry_for_cookie(self, name: str) -> tuple[str, Vendor, bool] | None:
        """The exact name or pattern that owns cookie `name`, its vendor, and whether it
        came from the `cookie_fallback` vendors; what `vendor_for_cookie` answers, with
        the reason. Not memoised."""
        hit = self._cookies.entry(name) if name else None
        if hit is not None:
            return hit[0], hit[1], False
        fallback = self._cookie_fallback
        hit = fallback.entry(name) if fallback is not None and name else None
        return None if hit is None else (hit[0], hit[1], True)

    def vendor_for_inline(self, text: str) -> Vendor | None:
        """The vendor of the first inline signature found in `text`, or None.

        "First" is by position; at one position the longest signature wins. One
        regex scan over the text, whatever the number of signatures (the regex is
        a trie of the signatures, so each position costs one step per shared
        prefix character, not one per signature). Texts up to 4096 characters
        are memoised.
        """
        if self._inline_regex is None:
            return None
        small = len(text) <= _INLINE_CACHE_TEXT
        if small:
            try:
                return self._inline_cache.table[text]
            except KeyError:
                pass
        m = self._inline_regex.search(text)
        vendor = None if m is None else self._inline[m.group()]
        if small:
            self._inline_cache.put(text, vendor, len(text))
        return vendor

    def by_service(self, name: str) -> Vendor | None:
        """The vendor for a consent-manager service key, case-insensitively.

        Explicit `services` keys are tried first, then vendor ids and names, so a
        Klaro or Usercentrics service named after the vendor still resolves.
        """
        key = name.strip().casefold()
        return self._services.get(key) or self._names.get(key)


def make_catalog(extra: Iterable[Vendor] = ()) -> Catalog:
    """The built-in catalogue followed by `extra` (operator vendors override by id),
    with the Open Cookie Database as the cookie fallback."""
    return Catalog((*load_builtin_vendors(), *extra), cookie_fallback=load_ocd_vendors())
