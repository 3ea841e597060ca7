"""`tag-gate catalogue`: what tag-gate believes about vendors, hosts, URLs and cookies.

Operators check the catalogue before they deploy: the built-in vendors, the Open
Cookie Database's cookie names (asked only for names no vendor claims) and their own
`[[vendor]]` tables from `--config`, each with its category and source. Every answer
comes from the lookups the proxy itself uses (`Catalog.entry_for_location`,
`Catalog.entry_for_cookie`, `Policy.classify_url`/`classify_cookie`), so what this
prints is what the gate, the `Link` filter, `explain` and the cookie firewall do.

Queries (one per run): list vendors, hosts, URL entries or cookie names (optionally
of one category); search vendors by id or name; which vendor owns a host (longest
listed suffix); what decides a URL; which vendor owns a cookie name. Text for people,
`--json` for machines: one object whose `kind` names the query (`vendors`, `hosts`,
`urls`, `cookies`, `vendor`, `host`, `url`, `cookie`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from .core.catalog import Catalog, Vendor, load_builtin_vendors, load_ocd_vendors
from .core.categories import BUILTIN_CATEGORIES
from .core.config import Config
from .core.policy import Origin, Policy
from .core.url import host_of

__all__ = ["LISTS", "CatalogueError", "Query", "answer", "render", "run_catalogue"]

LISTS: Final = ("vendors", "hosts", "urls", "cookies")
"""What `--list` can list."""

BUILTIN: Final = "built-in"
OCD: Final = "open-cookie-database"
OPERATOR: Final = "config"


class CatalogueError(ValueError):
    """A query tag-gate cannot answer as asked (the message says what to ask instead)."""


@dataclass(frozen=True, slots=True)
class Query:
    """One `tag-gate catalogue` question: exactly one of the fields besides `category`
    and `page_host` is set (none: list the vendors)."""

    listing: str | None = None
    vendor: str | None = None
    host: str | None = None
    url: str | None = None
    cookie: str | None = None
    category: str | None = None
    page_host: str | None = None


class _View:
    """The catalogue of one config, and where each vendor comes from."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy: Policy = config.policy
        self.catalog: Catalog = self.policy.catalog
        builtin = {v.id for v in load_builtin_vendors()}
        operator = {v.id for v in config.vendors}
        self.origins: dict[str, str] = {}
        for v in self.catalog.vendors:
            if v.id in operator:
                self.origins[v.id] = f"{OPERATOR} (replaces the built-in entry)" if v.id in builtin else OPERATOR
            else:
                self.origins[v.id] = BUILTIN
        self.ocd = load_ocd_vendors()

    def origin(self, vendor: Vendor) -> str:
        return self.origins.get(vendor.id, OCD)

    def brief(self, vendor: Vendor) -> dict[str, str]:
        return {
            "id": vendor.id,
            "name": vendor.name,
            "category": vendor.category,
            "origin": self.origin(vendor),
            "source": vendor.source,
        }

    def detail(self, vendor: Vendor) -> dict[str, Any]:
        return {
            **self.brief(vendor),
            "description": vendor.description,
            "hosts": list(vendor.hosts),
            "urls": list(vendor.urls),
            "cookies": list(vendor.cookies),
            "inline": list(vendor.inline),
            "services": list(vendor.services),
        }


def _categories(view: _View) -> list[str]:
    return [*BUILTIN_CATEGORIES, *(name for name, _ in view.config.categories)]


def _in_category(vendor: Vendor, category: str | None) -> bool:
    return category is None or vendor.category == category


def _list(view: _View, what: str, category: str | None) -> dict[str, Any]:
    vendors = [v for v in view.catalog.vendors if _in_category(v, category)]
    ocd = [o for o in view.ocd if _in_category(o, category)]
    if what == "vendors":
        return {"kind": "vendors", "vendors": [view.brief(v) for v in (*vendors, *ocd)]}
    if what == "hosts":
        rows = []
        for v in vendors:
            for host in v.hosts:
                hit = view.catalog.entry_for_location(host, None)
                rows.append({"host": host, **_owner(view, v, hit[1] if hit and hit[0] == host else None)})
        return {"kind": "hosts", "hosts": sorted(rows, key=lambda r: r["host"].split(".")[::-1])}
    if what == "urls":
        rows = []
        for v in vendors:
            for entry in v.urls:
                rows.append({"url": entry, **_owner(view, v, _url_owner(view.catalog, entry))})
        return {"kind": "urls", "urls": sorted(rows, key=lambda r: r["url"])}
    rows = []
    for v in (*vendors, *ocd):
        for name in v.cookies:
            owner = view.catalog.entry_for_cookie(name) if "*" not in name else None
            rows.append({"cookie": name, **_owner(view, v, owner[1] if owner and owner[0] == name else None)})
    return {"kind": "cookies", "cookies": rows}


def _url_owner(catalog: Catalog, entry: str) -> Vendor | None:
    """Who a URL entry's own URL resolves to (a later vendor may own the same entry)."""
    url = "https://" + entry
    host = host_of(url)
    hit = catalog.entry_for_location(host, url) if host else None
    return hit[1] if hit is not None and hit[0] == entry else None


def _owner(view: _View, vendor: Vendor, effective: Vendor | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "vendor": vendor.id,
        "name": vendor.name,
        "category": vendor.category,
        "origin": view.origin(vendor),
    }
    if effective is not None and effective.id != vendor.id:
        row["overridden_by"] = effective.id
    return row


def _search(view: _View, text: str, category: str | None) -> dict[str, Any]:
    needle = text.strip().casefold()
    if not needle:
        raise CatalogueError("--vendor needs some text to look for")
    vendors = [v for v in (*view.catalog.vendors, *view.ocd) if _in_category(v, category)]
    exact = [v for v in vendors if needle in (v.id, v.name.casefold())]
    found = exact or [v for v in vendors if needle in v.id or needle in v.name.casefold()]
    return {"kind": "vendor", "query": {"vendor": text}, "vendors": [view.detail(v) for v in found]}


def _host(view: _View, text: str) -> dict[str, Any]:
    if "/" in text.strip().lstrip("/") or "://" in text:
        raise CatalogueError(f"{text!r} is a URL, not a host name; ask with --url")
    host = host_of("//" + text.strip().lstrip("/"))
    if host is None:
        raise CatalogueError(f"{text!r} is not a host name")
    hit = view.catalog.entry_for_location(host, None)
    # URL entries on this host or a parent domain win over the host on their paths.
    suffixes = {host[i + 1 :] for i, c in enumerate(host) if c == "."} | {host}
    paths = [
        {"url": e, **_owner(view, v, _url_owner(view.catalog, e))}
        for v in view.catalog.vendors
        for e in v.urls
        if e.partition("/")[0].partition("?")[0] in suffixes
    ]
    return {
        "kind": "host",
        "query": {"host": host},
        "entry": None if hit is None else hit[0],
        "vendor": None if hit is None else view.detail(hit[1]),
        "urls": sorted(paths, key=lambda r: r["url"]),
        "unknown_hosts": view.config.html.unknown_hosts,
    }


def _url(view: _View, url: str, page_host: str | None) -> dict[str, Any]:
    url = url.strip()
    host = host_of(url)
    hit = view.catalog.entry_for_location(host, url) if host is not None else None
    c = view.policy.classify_url(url, page_host)
    return {
        "kind": "url",
        "query": {"url": url, "page_host": page_host},
        "host": host,
        "entry": None if hit is None else hit[0],
        "vendor": None if hit is None else view.detail(hit[1]),
        "decision": {
            "category": c.category,
            "vendor": c.vendor.id if c.vendor else None,
            "origin": c.origin.value,
            "rule": c.rule,
        },
    }


def _cookie(view: _View, name: str) -> dict[str, Any]:
    hit = view.catalog.entry_for_cookie(name)
    c = view.policy.classify_cookie(name)
    return {
        "kind": "cookie",
        "query": {"cookie": name},
        "entry": None if hit is None else hit[0],
        "vendor": None if hit is None else view.detail(hit[1]),
        "decision": {
            "category": c.category,
            "vendor": c.vendor.id if c.vendor else None,
            "origin": c.origin.value,
            "rule": c.rule,
        },
        "unknown_cookies": view.config.cookies.unknown,
    }


def answer(config: Config, query: Query) -> dict[str, Any]:
    """The answer to `query` under `config`, as JSON-ready data. Raises CatalogueError
    for a query that cannot be asked that way (a URL given as a host, an unknown
    category, ...)."""
    view = _View(config)
    if query.category is not None and query.category not in _categories(view):
        raise CatalogueError(f"unknown category {query.category!r} (known: {', '.join(_categories(view))})")
    if query.vendor is not None:
        return _search(view, query.vendor, query.category)
    if query.host is not None:
        return _host(view, query.host)
    if query.url is not None:
        return _url(view, query.url, query.page_host)
    if query.cookie is not None:
        return _cookie(view, query.cookie)
    listing = query.listing or "vendors"
    if listing not in LISTS:
        raise CatalogueError(f"cannot list {listing!r} (known: {', '.join(LISTS)})")
    return _list(view, listing, query.category)


# --------------------------------------------------------------------------- text


def _table(rows: Sequence[Sequence[str]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def _vendor_text(v: dict[str, Any], out: IO[str]) -> None:
    out.write(f"{v['id']}: {v['name']} ({v['category']}, {v['origin']})\n")
    if v["description"]:
        out.write(f"  {v['description']}\n")
    out.write(f"  source:   {v['source'] or '(none given)'}\n")
    for key in ("hosts", "urls", "cookies", "inline", "services"):
        if v[key]:
            out.write(f"  {key + ':':9} {', '.join(v[key])}\n")


def _clip(text: str, width: int = 72) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _owner_cells(r: dict[str, Any]) -> list[str]:
    shadow = f" (overridden by {r['overridden_by']})" if "overridden_by" in r else ""
    return [r["vendor"] + shadow, r["category"], r["origin"]]


def _decision_text(d: dict[str, Any]) -> str:
    if d["origin"] in (Origin.CATALOG.value,):
        return f"{d['category']} (catalogue, vendor {d['vendor']})"
    if d["rule"] and d["origin"] in (Origin.RULE.value, Origin.COOKIE_RULE.value):
        return f"{d['category'] or 'kept'} (rule {d['rule']!r})"
    return f"{d['category'] or 'kept'} ({d['rule'] or d['origin']})"


def render(data: dict[str, Any], out: IO[str]) -> None:
    """Write an `answer` for people."""
    q = data.get("query", {})
    kind = data["kind"]
    if kind == "vendors":
        rows = [["ID", "NAME", "CATEGORY", "ORIGIN", "SOURCE"]]
        rows += [[v["id"], v["name"], v["category"], v["origin"], _clip(v["source"])] for v in data["vendors"]]
        _table(rows, out)
        ocd = sum(v["origin"] == OCD for v in data["vendors"])
        out.write(
            f"{len(data['vendors']) - ocd} vendors and {ocd} Open Cookie Database platforms"
            " (--vendor ID shows one in full)\n"
        )
    elif kind in ("hosts", "urls", "cookies"):
        column = kind[:-1]
        rows = [[column.upper(), "VENDOR", "CATEGORY", "ORIGIN"]]
        rows += [[r[column], *_owner_cells(r)] for r in data[kind]]
        _table(rows, out)
        out.write(f"{len(data[kind])} {kind}\n")
    elif kind == "vendor":
        if not data["vendors"]:
            out.write(f"no vendor's id or name contains {q['vendor']!r}\n")
        for i, v in enumerate(data["vendors"]):
            out.write("\n" if i else "")
            _vendor_text(v, out)
    elif kind == "host":
        v = data["vendor"]
        if v is None:
            out.write(f"{q['host']}: no vendor (an unknown host: html.unknown_hosts = {data['unknown_hosts']!r})\n")
        else:
            out.write(f"{q['host']}: {v['id']} ({v['category']}), by the host entry {data['entry']!r}\n\n")
            _vendor_text(v, out)
        if data["urls"]:
            out.write("\nURL entries that win over the host on their paths:\n")
            _table([[r["url"], *_owner_cells(r)] for r in data["urls"]], out)
    elif kind == "url":
        v = data["vendor"]
        where = f"no catalogue entry (host {data['host']})" if data["host"] else "no third-party host"
        if v is not None:
            where = f"{v['id']} ({v['category']}), by the entry {data['entry']!r}"
        out.write(f"{q['url']}\n  catalogue: {where}\n  decision:  {_decision_text(data['decision'])}\n")
        if v is not None:
            out.write("\n")
            _vendor_text(v, out)
    elif kind == "cookie":
        v = data["vendor"]
        where = "no vendor claims it"
        if v is not None:
            where = f"{v['id']} ({v['category']}), by {data['entry']!r}"
        out.write(f"{q['cookie']}\n  catalogue: {where}\n  decision:  {_decision_text(data['decision'])}")
        out.write(f" (cookies.unknown = {data['unknown_cookies']!r})\n" if v is None else "\n")
        if v is not None:
            out.write("\n")
            _vendor_text(v, out)


def run_catalogue(config: Config, query: Query, *, as_json: bool, out: IO[str] = sys.stdout) -> int:
    """Answer `query` on `out`; 0, or 1 when a vendor search found nothing. Raises
    CatalogueError for a query that cannot be asked that way."""
    data = answer(config, query)
    if as_json:
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        render(data, out)
    return 1 if query.vendor is not None and not data["vendors"] else 0
