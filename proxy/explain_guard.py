"""`tag-gate explain --guard` and `--admin`: the runtime layers as an operator sees them.

- `guard_report(config, consent, page_host)`: what a gated page served under this
  consent carries at runtime: whether it gets the guard at all (and why not), the
  refused categories, the guard's rule table (each vendor with its category, host
  suffixes and URL prefixes; vendors of granted categories appear only where they win
  a URL over a refused one, so the browser decides as the server does), the operator
  rules, the table's weight, and the CSP layer's header for this visitor.
- `fetch_listing(admin_url)`: the live CSP report listing (`/csp-gaps` of the admin
  listener): catalogue gaps (third-party hosts nothing classifies) and runtime leaks
  (refused vendors that were contacted anyway), to read with `render_listing`.

Pure but for `fetch_listing`; the table is `proxy.html.guard.GuardRules`' own, so what is
shown is what ships.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Sequence
from typing import IO, Any

from .core.categories import ESSENTIAL
from .core.config import Config
from .core.consent import ConsentState
from .core.csp import CspHeaders
from .html.guard import config_guard

__all__ = ["fetch_listing", "guard_report", "render_guard", "render_listing"]


def guard_report(config: Config, consent: ConsentState, page_host: str | None) -> dict[str, Any]:
    """The runtime layers for a gated page under `consent` (module docstring)."""
    policy = config.policy
    html = config.html
    refused = sorted(c for c in policy.gated_categories if c not in consent.granted and c != ESSENTIAL)
    out: dict[str, Any] = {"refused": refused, "guard": "inserted", "csp": None}
    if not html.guard.enabled:
        out["guard"] = "off ([html.guard] enabled = false)"
    elif not policy.refusable(consent):
        out["guard"] = "not inserted (this visitor refuses nothing the policy acts on)"
    guard = config_guard(config)  # the one pages get
    text = guard.rules_json(consent, page_host)
    table = json.loads(text)
    out["vendors"] = [
        {"vendor": v[0], "category": v[1], "refused": v[1] in refused, "hosts": v[2], "urls": v[3]}
        for v in guard.vendor_rows(consent)
    ]
    out["rules"] = [
        {
            "hosts": sorted(r[0] or ()),
            "paths": r[1] or [],
            "regex": r[2][0] if r[2] else "",
            "vendor": r[3] or "",
            "outcome": "keep" if r[4] == 0 else "vendor's category" if r[4] == 1 else r[4],
        }
        for r in table["rules"]
    ]
    out["unknown_hosts"] = table["unknown"]
    out["warnings"] = list(guard.warnings)
    out["table_bytes"] = len(text)
    out["table_gzip"] = len(gzip.compress(text.encode(), 9, mtime=0))
    csp = html.csp
    if csp.mode != "off" and csp.sample > 0 and policy.refusable(consent):
        headers = CspHeaders(csp.layer, policy.catalog.vendors, html.first_party_hosts)
        out["csp"] = {"header": headers.header, "value": headers.value(consent), "sample": csp.sample}
    return out


def render_guard(report: dict[str, Any], out: IO[str]) -> None:
    """The human form of `guard_report`."""
    out.write(f"\nRuntime guard: {report['guard']}\n")
    out.write(f"Refused categories: {', '.join(report['refused']) or 'none'}\n")
    vendors = report["vendors"]
    refused = sum(1 for v in vendors if v["refused"])
    out.write(
        f"Guard rule table: {len(vendors)} vendors ({refused} refused, {len(vendors) - refused} kept because they"
        f" win a URL over a refused one), {len(report['rules'])} operator rules;"
        f" {report['table_bytes']:,} bytes, {report['table_gzip']:,} gzip\n"
    )
    if report["unknown_hosts"]:
        out.write(f"Unknown third-party hosts are refused too (html.unknown_hosts = {report['unknown_hosts']!r})\n")
    if vendors:
        rows: list[tuple[str, ...]] = [("VENDOR", "CATEGORY", "BLOCKS", "HOSTS", "URL PREFIXES")]
        for v in vendors:
            hosts = ", ".join(v["hosts"])
            urls = ", ".join(v["urls"])
            rows.append(
                (
                    v["vendor"],
                    v["category"],
                    "yes" if v["refused"] else "no",
                    hosts if len(hosts) <= 60 else hosts[:57] + "...",
                    urls if len(urls) <= 60 else urls[:57] + "...",
                )
            )
        _table(rows, out)
    if report["rules"]:
        rows = [("RULE HOSTS", "PATHS", "URL REGEX", "VENDOR", "OUTCOME")]
        for r in report["rules"]:
            rows.append((", ".join(r["hosts"]), ", ".join(r["paths"]), r["regex"], r["vendor"], str(r["outcome"])))
        _table(rows, out)
    for warning in report["warnings"]:
        out.write(f"warning: {warning}\n")
    csp = report["csp"]
    if csp is None:
        out.write("CSP layer: none on this visitor's pages\n")
    else:
        out.write(f"CSP layer ({csp['header']}, on {csp['sample']:.0%} of gated pages):\n  {csp['value']}\n")


async def fetch_listing(admin_url: str) -> dict[str, Any]:
    """The admin listener's `/csp-gaps` document (raises on a network error or a non-200)."""
    import aiohttp

    url = admin_url.rstrip("/") + "/csp-gaps"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(url) as resp,
    ):
        if resp.status != 200:
            raise ValueError(f"{url} answered {resp.status}")
        listing: dict[str, Any] = await resp.json(content_type=None)
        return listing


def render_listing(listing: dict[str, Any], out: IO[str], now: float | None = None) -> None:
    """The human form of a `/csp-gaps` document: gaps first (what to add to the catalogue
    or `[[rule]]`), then leaks (what the guard let through: check with `explain`)."""
    now = time.time() if now is None else now
    gaps = listing.get("gaps") or []
    out.write(f"Catalogue gaps reported by browsers (third-party hosts nothing classifies): {len(gaps)}\n")
    if gaps:
        rows: list[tuple[str, ...]] = [("HOST", "REPORTS", "LAST SEEN", "DIRECTIVE", "EXAMPLE", "PAGE")]
        for g in gaps:
            rows.append(
                (
                    str(g["host"]),
                    str(g["count"]),
                    _ago(now - float(g["last_seen"])),
                    str(g["directive"]),
                    str(g["example"])[:60],
                    str(g["page"])[:60],
                )
            )
        _table(rows, out)
    if listing.get("gaps_evicted"):
        out.write(f"({listing['gaps_evicted']} older hosts left the listing: html.csp.gap_hosts is full)\n")
    leaks = listing.get("leaks") or []
    out.write(f"\nRuntime leaks (refused vendors the browser contacted anyway): {len(leaks)}\n")
    if leaks:
        rows = [("VENDOR", "CATEGORY", "REPORTS", "LAST SEEN", "DIRECTIVE", "EXAMPLE", "PAGE")]
        for r in leaks:
            rows.append(
                (
                    str(r["vendor"]),
                    str(r["category"]),
                    str(r["count"]),
                    _ago(now - float(r["last_seen"])),
                    str(r["directive"]),
                    str(r["example"])[:60],
                    str(r["page"])[:60],
                )
            )
        _table(rows, out)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _table(rows: Sequence[tuple[str, ...]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
