"""The runtime guard's rule table and inline script (pure: stdlib and the policy only).

tag-gate's HTML gate removes refused tags from the markup it relays; tags that page
JavaScript adds later are stopped in the browser by `data/public/guard.js`, inserted as
the first child of `<head>`. The guard carries a JSON rule table built here: the
visitor's granted categories and the rules **for the refused categories only**, plus
the entries of other vendors that would win over a refused one for some URL (so the
guard decides every URL as `Policy.decide_url` does; tests/data/url_decisions.json is
the shared proof), plus the operator's URL `[[rule]]`s in order. The guard's code is
loaded and compacted by `proxy.html.guard_code`; rules' `url_regex` are translated to
JavaScript by `proxy.html.jsregex` (both names are still importable from here).

Cost: a table depends on the config and the consent key only, so `GuardRules` builds
it once per consent key (memoised, bounded) and the per-page part is the page host,
appended by string concatenation. Nothing here runs per element.

Use (per config generation)::

    guard = make_guard(policy, cookie_name=..., gpc_refuses=..., defer_style=...)
    guard.warnings                      # log at config load: rules the browser can't apply
    body = guard.script(consent, host)  # text of <script nonce=...>BODY</script>

Table format (version 3; short keys and vendors packed in strings because it ships on
every gated page, indexed here so the browser only splits and parses it)::

    {"v": 3, "cookie": "tg_consent", "style": "tag-gate",
     "cmp": "CookieConsent OptanonConsent",   # the other consent cookies the server reads
     "granted": {"analytics": 1, "essential": 1},  # consent.granted at page load
     "final": {"advertising": 1},             # refused by Sec-GPC: no cookie grants them
     "unknown": null,                         # html.unknown_hosts when it is refused
     "firstParty": {"cdn.shop.example": 1},   # html.first_party_hosts
     "vendors": [["advertising", "facebook.net,fbcdn.net tiktok~ ..."],
                 ["social", "facebook-social,facebook~,fb~ ..."], ...],
     "urls": {"facebook.com": [["/tr", 0]], ...},  # path prefix, vendor index,
                                              # query parameter, value regex, path regex
     "rules": [[{"ads.example": 1} | 0, ["/track/"] | 0, ["^https://", "u"] | 0,
                "vendor-id" | 0, 0 | 1 | "category"], ...],
     "page": "www.shop.example"}

`vendors` are the refused vendors and those whose entries win some URL over a refused
one (`vendor_rows` lists them readably), grouped by category: each vendor is
`id,host,host`, or `host,host` when the id is the second-to-last label of the first host
(`facebook.net` is vendor `facebook`); `~` at the end of a host stands for `.com`; a
vendor's index is its place in reading order (`decode_table` reads it as guard.js does).
`urls` entries at one host suffix come longest prefix first (a query condition,
`?param=glob` with `*` any run, before none; a `*` in the path is any run inside one
segment, sent as a regex source), trailing zeros dropped. `rules`
outcomes: 0 keeps (`allow`), 1 takes the vendor's category (a rule with only an
`action`), a string is the rule's category.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..core.categories import ESSENTIAL
from ..core.consent import ConsentState, consent_cookie_names
from ..core.memo import Memo
from ..core.policy import Policy, UrlRule
from ..core.url_entries import path_pattern
from ..core.vendors import Vendor
from .guard_code import compact_js, guard_sizes, js_string, js_tokens, load_guard_code, minify_js, split_guard_code
from .jsregex import translate_regex

if TYPE_CHECKING:
    from ..core.config import Config

__all__ = [
    "TABLE_VERSION",
    "GuardRules",
    "compact_js",
    "config_guard",
    "decode_table",
    "guard_sizes",
    "js_tokens",
    "load_guard_code",
    "make_guard",
    "make_guard_rules",
    "minify_js",
    "translate_regex",
]

TABLE_VERSION: Final = 3
_CACHE_LIMIT: Final = 256
_CACHE_BYTES: Final = 64 << 20
"""Consent keys per config: 2**4 built-in combinations x GPC, more with custom categories."""


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class _Entry:
    """One catalogue lookup entry: a host suffix, or a host suffix and URL prefix."""

    suffix: str
    path: str | None
    vendor: Vendor
    text: str
    """As written in the table: the host, or `host/path[?param=glob]`."""


def _entries(vendors: Iterable[Vendor]) -> list[_Entry]:
    """The effective catalogue entries, as `Catalog` resolves them (a later vendor wins a
    host or a host + path)."""
    hosts: dict[str, Vendor] = {}
    paths: dict[tuple[str, str], tuple[Vendor, str]] = {}
    for vendor in vendors:
        for host in vendor.hosts:
            hosts[host.lower()] = vendor
        for url in vendor.urls:
            host, _, path = url.partition("/")
            paths[(host.lower(), "/" + path)] = (vendor, f"{host.lower()}/{path}")
    out = [_Entry(h, None, v, h) for h, v in hosts.items()]
    out += [_Entry(h, p, v, text) for (h, p), (v, text) in paths.items()]
    return out


def _plain_path(path: str) -> str:
    return path.partition("?")[0]


def _overlap(a: str | None, b: str | None) -> bool:
    """Whether some URL path can be under both prefixes (None: any path); a `*` in a
    path may match anything, so only the part before it is compared."""
    if a is None or b is None:
        return True
    a, b = _plain_path(a).partition("*")[0], _plain_path(b).partition("*")[0]
    return a.startswith(b) or b.startswith(a)


def _precedes(e: _Entry, k: _Entry) -> bool:
    """Whether the lookup can meet `e` before `k` for a URL both match (the order of
    `proxy.core.url_entries`: longer path, then a query condition, then later vendor)."""
    if e.suffix == k.suffix:
        if e.path is None:
            return False
        if k.path is None:
            return True
        e_len, k_len = len(_plain_path(e.path)), len(_plain_path(k.path))
        before = e_len > k_len or (e_len == k_len and ("?" in e.path or "?" not in k.path))
        return before and _overlap(e.path, k.path)
    return e.suffix.endswith("." + k.suffix) and _overlap(e.path, k.path)


def _suffixes(host: str) -> Iterator[str]:
    while True:
        yield host
        dot = host.find(".")
        if dot < 0:
            return
        host = host[dot + 1 :]


_PATH_ENCODE: Final = re.compile(r'[\x00-\x20"<>`{}\x7f-\U0010ffff]')


def _browser_path(prefix: str) -> str:
    """A path prefix percent-encoded as the browser's URL parser writes `pathname`."""
    return _PATH_ENCODE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), prefix)


class GuardRules:
    """The guard's table for one policy (one config generation) and every consent key.

    `warnings` lists what the browser cannot apply exactly (untranslatable `url_regex`,
    computed once); `rules_json` and `script` are memoised per consent key.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        cookie_name: str = "tg_consent",
        gpc_refuses: Collection[str] = ("advertising",),
        defer_style: str = "tag-gate",
        cmp_cookies: Collection[str] = (),
    ) -> None:
        self.policy = policy
        self.cookie_name = cookie_name
        self.cmp_cookies = " ".join(sorted(set(cmp_cookies) - {cookie_name}))
        self.gpc_refuses = frozenset(gpc_refuses)
        self.defer_style = defer_style
        self._entries = _entries(policy.catalog.vendors)
        warnings: list[str] = []
        self._rules = self._compile_rules(warnings)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._memo: Memo[str, tuple[str, str]] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._scripts: Memo[str, tuple[str, str]] = Memo(_CACHE_LIMIT, _CACHE_BYTES)

    def _compile_rules(self, warnings: list[str]) -> list[list[object]]:
        out: list[list[object]] = []
        for rule in self.policy.rules:
            if rule.for_inline:
                continue
            regex: object = 0
            if rule.url_regex is not None:
                try:
                    regex = list(translate_regex(rule.url_regex))
                except ValueError as exc:
                    warnings.append(
                        f"rule {rule.name!r}: url_regex {rule.url_regex.pattern!r} cannot run in the browser ({exc});"
                        " the runtime guard skips this rule"
                    )
                    continue
                if rule.url_regex.flags & re.IGNORECASE and re.search(r"[iI]|-", rule.url_regex.pattern):
                    warnings.append(
                        f"rule {rule.name!r}: case-insensitive url_regex: in the browser 'i' does not match"
                        " U+0130 or U+0131 as it does in Python"
                    )
            out.append(
                [
                    _flags(rule.hosts) or 0,
                    [_browser_path(p) for p in rule.path_prefixes] or 0,
                    regex,
                    rule.vendor or 0,
                    _outcome(rule),
                ]
            )
        return out

    def vendor_rows(self, consent: ConsentState) -> list[list[Any]]:
        """The table's vendors as `[id, category, [host suffix], ["host/path[?q=glob]"]]`:
        the refused ones and those that win some URL over a refused one (what `tag-gate
        explain --guard` shows; the table ships them indexed, `_index`)."""
        policy = self.policy
        granted = consent.granted

        def refused(category: str | None) -> bool:
            return category is not None and category != ESSENTIAL and category not in granted

        constrained = {r.vendor for r in policy.rules if r.vendor and not r.for_inline}
        if refused(policy.unknown_hosts):
            # Any URL the table does not know would be "unknown" and blocked: it must know all.
            keep = list(self._entries)
        else:
            key = [e for e in self._entries if refused(e.vendor.category) or e.vendor.id in constrained]
            by_suffix: dict[str, list[_Entry]] = {}
            for e in key:
                by_suffix.setdefault(e.suffix, []).append(e)
            chosen = set(map(id, key))
            keep = [
                e
                for e in self._entries
                if id(e) in chosen or any(_precedes(e, k) for s in _suffixes(e.suffix) for k in by_suffix.get(s, ()))
            ]
        vendors: dict[str, list[Any]] = {}
        order = {v.id: i for i, v in enumerate(policy.catalog.vendors)}
        # Later vendors first: the guard tries URL entries of equal rank in table order.
        for e in sorted(keep, key=lambda e: (-order[e.vendor.id], e.path is not None, e.text)):
            row = vendors.setdefault(e.vendor.id, [e.vendor.id, e.vendor.category, [], []])
            row[3 if e.path is not None else 2].append(e.text)
        return list(vendors.values())

    def _table(self, consent: ConsentState) -> dict[str, object]:
        policy = self.policy
        granted = consent.granted
        unknown = policy.unknown_hosts
        if unknown is None or unknown == ESSENTIAL or unknown in granted:
            unknown = None
        return {
            "v": TABLE_VERSION,
            "cookie": self.cookie_name,
            "cmp": self.cmp_cookies,
            "style": self.defer_style,
            "granted": _flags(granted),
            "final": _flags(self.gpc_refuses - granted if consent.gpc else ()),
            "unknown": unknown,
            "firstParty": _flags(policy.first_party_hosts),
            **_index(self.vendor_rows(consent)),
            "rules": self._rules,
        }

    def _cached(self, consent: ConsentState) -> tuple[str, str]:
        hit = self._memo.table.get(consent.key)
        if hit is None:
            text = _script_json(self._table(consent))
            # `{...}` → `{...,"page":` + host + `}`: the per-page part is one concatenation.
            hit = self._memo.put(consent.key, (text[:-1] + ',"page":', "}"), len(text))
        return hit

    def rules_json(self, consent: ConsentState, page_host: str | None) -> str:
        """The table for a visitor and a page, as a JSON text safe inside `<script>`."""
        head, tail = self._cached(consent)
        return head + _script_json(page_host) + tail

    def script(self, consent: ConsentState, page_host: str | None) -> str:
        """The text of the inline `<script>` (guard code with its table as a JSON text in
        a string literal); `page_host` None leaves the host to the browser (`location`)."""
        hit = self._scripts.table.get(consent.key)
        if hit is None:
            head, tail = self._cached(consent)
            before, after = split_guard_code()
            parts = (f"{before}'{js_string(head)}", f"{js_string(tail)}'{after}")
            hit = self._scripts.put(consent.key, parts, len(parts[0]) + len(parts[1]))
        return hit[0] + js_string(_script_json(page_host)) + hit[1]


def _flags(names: Iterable[str]) -> dict[str, int]:
    """A set as the guard reads it: `{name: 1}` (sorted, so equal sets give equal text)."""
    return dict.fromkeys(sorted(names), 1)


_URL_ENTRY: Final = re.compile(r"([^/]+)([^?]*)(?:\?([^=]*)=(.*))?", re.DOTALL)
_GLOB_SPECIAL: Final = re.compile(r"[\\^$.+?()[\]{}|/]")


def _index(rows: list[list[Any]]) -> dict[str, object]:
    """The vendor rows as the guard reads them (table version 3, see the module docstring):
    `vendors` `[[category, "vendor vendor ..."]]`, each vendor `id,host,host` or, when its
    id is the second-to-last label of a host, that host first and no id (`host,host`);
    a host ending in `.com` is written with `~` instead. A vendor's index is its place
    in that reading order. `urls` host suffix → `[[path prefix, vendor index, query
    parameter, value regex source, path regex source]]` (trailing zeros dropped), the
    longest prefix first and, at one length, one with a query condition before one
    without (`Catalog._lookup`); entries of equal rank keep the rows' order."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[1], []).append(i)
    new_index: dict[int, int] = {}
    vendors: list[list[str]] = []
    for category, members in groups.items():
        words = []
        for i in members:
            new_index[i] = len(new_index)
            vendor_id, _, hosts, _ = rows[i]
            named = [h for h in hosts if h.count(".") and h.split(".")[-2] == vendor_id]
            fields = [named[0], *(h for h in hosts if h != named[0])] if named else [vendor_id, *hosts]
            words.append(",".join(f[:-4] + "~" if f.endswith(".com") else f for f in fields))
        vendors.append([category, " ".join(words)])
    urls: dict[str, list[list[object]]] = {}
    for i, row in enumerate(rows):
        for url in row[3]:
            m = _URL_ENTRY.fullmatch(url)
            assert m is not None
            host, path, param, glob = m.groups()
            regex = (
                "^" + _GLOB_SPECIAL.sub(lambda c: "\\" + c.group(), glob).replace("*", ".*") + "$"
                if glob is not None
                else 0
            )
            path_glob = "^" + path_pattern(path) if "*" in path else 0
            entry: list[object] = [path, new_index[i], param if param is not None else 0, regex, path_glob]
            while len(entry) > 2 and entry[-1] == 0:
                entry.pop()
            urls.setdefault(host, []).append(entry)
    for entries in urls.values():
        entries.sort(key=lambda e: (-len(str(e[0])), len(e) < 4 or not e[3]))
    return {"vendors": vendors, "urls": urls}


def decode_table(table: dict[str, Any]) -> tuple[list[list[str]], dict[str, int]]:
    """The vendors (`[id, category]`, by index) and the host suffix → vendor index map
    of a table as the guard reads them (the Python twin of guard.js's `table()`)."""
    vendors: list[list[str]] = []
    hosts: dict[str, int] = {}
    for category, text in table["vendors"]:
        for word in text.split(" "):
            fields = [f[:-1] + ".com" if f.endswith("~") else f for f in word.split(",")]
            vendor_id = fields[0].split(".")[-2] if "." in fields[0] else fields.pop(0)
            for host in fields:
                hosts[host] = len(vendors)
            vendors.append([vendor_id, category])
    return vendors, hosts


def _outcome(rule: UrlRule) -> object:
    if rule.allow:
        return 0
    return rule.category or 1


def _script_json(value: object) -> str:
    """JSON that can sit inside an inline `<script>`: `<`, `>`, `&` and non-ASCII escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_GUARDS: dict[int, tuple[weakref.ref[Policy], tuple[object, ...], GuardRules]] = {}


def make_guard(
    policy: Policy,
    *,
    cookie_name: str = "tg_consent",
    gpc_refuses: Collection[str] = ("advertising",),
    defer_style: str = "tag-gate",
    cmp_cookies: Collection[str] = (),
) -> GuardRules:
    """The `GuardRules` of a policy, made once per policy object and settings (a new
    config generation has a new Policy, so its tables are built anew)."""
    settings = (cookie_name, frozenset(gpc_refuses), defer_style, frozenset(cmp_cookies))
    hit = _GUARDS.get(id(policy))
    if hit is not None and hit[0]() is policy and hit[1] == settings:
        return hit[2]
    guard = GuardRules(
        policy, cookie_name=cookie_name, gpc_refuses=gpc_refuses, defer_style=defer_style, cmp_cookies=cmp_cookies
    )
    key = id(policy)
    _GUARDS[key] = (weakref.ref(policy), settings, guard)
    weakref.finalize(policy, _GUARDS.pop, key, None)
    return guard


def config_guard(config: Config) -> GuardRules:
    """The guard of a config, as `tag-gate serve` ships it (`proxy.http.layers`) and
    `tag-gate explain --guard` shows it: its consent cookie, the other consent cookies its
    sources read (which the guard watches), Sec-GPC's refusals, its deferral style."""
    return make_guard(
        config.policy,
        cookie_name=config.consent.cookie_name,
        gpc_refuses=config.consent.gpc_refuses,
        defer_style=config.html.defer_style,
        cmp_cookies=consent_cookie_names(config.consent),
    )


def make_guard_rules(
    policy: Policy,
    consent: ConsentState,
    page_host: str | None,
    *,
    cookie_name: str = "tg_consent",
    gpc_refuses: Collection[str] = ("advertising",),
    defer_style: str = "tag-gate",
) -> str:
    """The rule table JSON for this visitor and page (memoised per policy and consent key)."""
    guard = make_guard(policy, cookie_name=cookie_name, gpc_refuses=gpc_refuses, defer_style=defer_style)
    return guard.rules_json(consent, page_host)
