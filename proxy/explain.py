"""`tag-gate explain` and `tag-gate explain-consent`: what tag-gate would do, and why.

`explain` runs the HTML gate in recording mode over a page (fetched from a URL, read
from a file or from stdin) for a given consent, and classifies the cookies the page
sets. It lists every tracker element and cookie with its vendor, category, decision
and the rule that decided, and the third-party hosts and cookie names nothing
classified, so an operator can add them to the config. With `--guard` it also shows
the runtime guard's rules and the CSP layer's header for that consent, and with
`--admin URL` the catalogue gaps and runtime leaks a live tag-gate's CSP report
endpoint collected (`proxy.explain_guard`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from .core.config import Config
from .core.consent import ConsentState, consent_report, format_consent, read_consent
from .core.cookies import parse_set_cookie
from .core.policy import Action, Kind, Origin
from .html.gate import GatePlan, gate_document
from .http.stages import Stages
from .metrics import Metrics

_HYDRATION: Final = (
    ("Next.js", rb'id=["\']?__NEXT_DATA__|self\.__next_f\b'),
    ("Nuxt", rb'id=["\']?__nuxt\b|window\.__NUXT__|id=["\']?__NUXT_DATA__'),
    ("Gatsby", rb'id=["\']?___gatsby\b'),
    ("Remix / React Router", rb"window\.__(?:remix|reactRouter)Context\b"),
    ("React (streamed server rendering)", rb"<!--\$\??-->"),
    ("React 17 or earlier", rb"\bdata-reactroot\b"),
    ("Vue 2", rb'\bdata-server-rendered=["\']?true'),
    ("Vue 3", rb"<!--\[-->"),
    ("Angular", rb"\bng-server-context=|\bngh=[\"']?\d"),
    ("SvelteKit", rb"\b__sveltekit_\w+\s*="),
    ("Astro islands", rb"<astro-island\b"),
)
_HYDRATION_RE: Final = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in _HYDRATION)
_TREE_CHANGING: Final = frozenset({Action.REMOVE.value, Action.PLACEHOLDER.value})


def hydration_markers(html: bytes) -> list[str]:
    """The frameworks whose server-rendering marks `html` carries: the page's scripts
    will hydrate its markup, and expect the nodes they would render there."""
    return [name for name, pattern in _HYDRATION_RE if pattern.search(html)]


@dataclass
class Explanation:
    consent: ConsentState
    elements: list[dict[str, str]] = field(default_factory=list)
    cookies: list[dict[str, str]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    unknown_cookies: list[str] = field(default_factory=list)
    hydration: list[str] = field(default_factory=list)
    """Frameworks that hydrate this page (`hydration_markers`)."""

    def tree_changed(self) -> bool:
        """Whether the gate takes elements out of a page a framework hydrates (or puts a
        placeholder box in their place): hydration then meets another tree. Connection
        hints (removed whatever the action, in the head, which most apps do not hydrate)
        and pings (an attribute) aside."""
        return bool(self.hydration) and any(
            e["decision"] in _TREE_CHANGING and e["tag"] != "link" and not e["tag"].endswith("[ping]")
            for e in self.elements
        )

    def as_json(self) -> dict[str, Any]:
        """The machine form: vendor ids instead of names; cookies without the rule."""
        return {
            "elements": [
                {
                    "tag": e["tag"],
                    "url": e["url"],
                    "vendor": e["vendor_id"],
                    "category": e["category"],
                    "decision": e["decision"],
                    "rule": e["rule"],
                }
                for e in self.elements
            ],
            "cookies": [
                {"name": c["name"], "vendor": c["vendor_id"], "category": c["category"], "decision": c["decision"]}
                for c in self.cookies
            ],
            "unclassified": {"hosts": self.hosts, "cookies": self.unknown_cookies},
            "hydration": {"frameworks": self.hydration, "tree_changed": self.tree_changed()},
        }


def explain_page(
    config: Config,
    consent: ConsentState,
    html: bytes,
    *,
    page_host: str | None,
    set_cookies: Sequence[str] = (),
) -> Explanation:
    """Classify every tracker element of `html` and every cookie in `set_cookies`."""
    stages = Stages(config, Metrics())
    plan: GatePlan = stages.gate_plan
    _, stats = gate_document(plan, consent, html, page_host=page_host, record=True)
    result = Explanation(consent)
    for record in stats.records or []:
        d = record.decision
        result.elements.append(
            {
                "tag": f"{record.tag}[ping]" if record.kind is Kind.PING else record.tag,
                "url": record.url or "(inline)",
                "vendor": d.vendor.name if d.vendor else "",
                "vendor_id": d.vendor.id if d.vendor else "",
                "category": d.category or "",
                "decision": d.action.value,
                "rule": d.rule,
            }
        )
    result.hosts = sorted(stats.unclassified_hosts or ())
    result.hydration = hydration_markers(html)
    policy = stages.policy
    unknown: list[str] = []
    for line in set_cookies:
        cookie = parse_set_cookie(line)
        if cookie is None:
            continue
        decision = policy.decide_cookie(consent, cookie.key)
        # Deletions always pass (removing a cookie tracks nobody).
        action = Action.KEEP if cookie.deletion or decision.keeps else Action.DROP
        result.cookies.append(
            {
                "name": cookie.key,
                "vendor": decision.vendor.name if decision.vendor else "",
                "vendor_id": decision.vendor.id if decision.vendor else "",
                "category": decision.category or "",
                "decision": action.value,
                "rule": decision.rule,
            }
        )
        if decision.origin is Origin.UNKNOWN_COOKIE and cookie.key not in unknown:
            unknown.append(cookie.key)
    result.unknown_cookies = unknown
    return result


def render_table(result: Explanation, config: Config, out: IO[str]) -> None:
    out.write(format_consent(result.consent, config.consent) + "\n\n")
    rows: list[tuple[str, ...]] = [("ELEMENT", "URL", "VENDOR", "CATEGORY", "DECISION", "RULE")]
    for e in result.elements:
        url = e["url"] if len(e["url"]) <= 60 else e["url"][:57] + "..."
        rows.append((e["tag"], url, e["vendor"], e["category"], e["decision"], e["rule"]))
    _table(rows, out)
    if not result.elements:
        out.write("(no tracker elements on this page)\n")
    if result.cookies:
        out.write("\n")
        header: list[tuple[str, ...]] = [("COOKIE", "VENDOR", "CATEGORY", "DECISION", "RULE")]
        _table(
            header
            + [
                (c["name"] or "(nameless)", c["vendor"], c["category"], c["decision"], c["rule"])
                for c in result.cookies
            ],
            out,
        )
    unknown_hosts = config.html.unknown_hosts
    out.write(
        f"\nUnclassified third-party hosts (html.unknown_hosts = {unknown_hosts!r}): "
        f"{', '.join(result.hosts) or 'none'}\n"
    )
    out.write(
        f"Unclassified cookies (cookies.unknown = {config.cookies.unknown!r}): "
        f"{', '.join(result.unknown_cookies) or 'none'}\n"
    )
    if result.tree_changed():
        out.write(
            f"\nThis page is server-rendered for hydration ({', '.join(result.hydration)}), and elements above are"
            " removed or replaced by a placeholder: the framework will meet another tree than it rendered (React"
            ' reports errors and renders again on the client, Vue logs mismatches). Set html.action = "defer"'
            " (or that category's action): refused elements then stay in place, inert.\n"
        )


def _table(rows: Sequence[tuple[str, ...]], out: IO[str]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


async def fetch(url: str, cookie: str | None, gpc: bool) -> tuple[bytes, list[str], str | None]:
    """GET a page as a browser would with that consent; returns (body, Set-Cookie lines, host)."""
    import aiohttp
    from yarl import URL

    headers = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "tag-gate-explain"}
    if cookie:
        headers["Cookie"] = cookie
    if gpc:
        headers["Sec-GPC"] = "1"
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as session,
        session.get(url, headers=headers) as resp,
    ):
        body = await resp.read()
        return body, resp.headers.getall("Set-Cookie", []), URL(url).host


def run_explain(
    config: Config,
    source: str | None,
    *,
    consent_cookie: str | None,
    gpc: bool,
    host: str | None,
    set_cookies: Sequence[str],
    as_json: bool,
    guard: bool = False,
    admin: str | None = None,
    out: IO[str] = sys.stdout,
) -> int:
    """The page's explanation (when `source` is given), then with `guard` the runtime
    layers for this consent, and with `admin` the live CSP report listing of the
    tag-gate whose admin listener is at that URL (`proxy.explain_guard`)."""
    from .explain_guard import fetch_listing, guard_report, render_guard, render_listing

    consent = read_consent(consent_cookie, "1" if gpc else None, config.consent)
    doc: dict[str, Any] = {}
    lines = list(set_cookies)
    if source is not None:
        if source.startswith(("http://", "https://")):
            body, fetched, url_host = asyncio.run(fetch(source, consent_cookie, gpc))
            lines = fetched + lines
            host = host or url_host
        elif source == "-":
            body = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as f:
                body = f.read()
        result = explain_page(config, consent, body, page_host=host, set_cookies=lines)
        if as_json:
            doc.update(result.as_json())
        else:
            render_table(result, config, out)
    elif not as_json:
        out.write(format_consent(consent, config.consent) + "\n")
    if guard:
        report = guard_report(config, consent, host)
        if as_json:
            doc["runtime"] = report
        else:
            render_guard(report, out)
    if admin is not None:
        listing = asyncio.run(fetch_listing(admin))
        if as_json:
            doc["reports"] = listing
        else:
            out.write("\n")
            render_listing(listing, out)
    if as_json:
        out.write(json.dumps(doc, indent=2) + "\n")
    return 0


def run_explain_consent(config: Config, cookie_header: str, *, gpc: bool, as_json: bool, out: IO[str]) -> int:
    state = read_consent(cookie_header or None, "1" if gpc else None, config.consent)
    if as_json:
        out.write(json.dumps(consent_report(state)) + "\n")
    else:
        out.write(format_consent(state, config.consent) + "\n")
    return 0
