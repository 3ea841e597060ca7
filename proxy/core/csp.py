"""Content-Security-Policy for the runtime layers: reading the site's policy, writing ours (pure).

Two jobs, both per response head and both pure (stdlib, config values only):

1. **How the runtime guard can run on a page** (`decide_guard_delivery`). The site's
   enforced policies (every `Content-Security-Policy` header, each possibly holding
   several comma-separated policies; report-only ones block nothing) decide whether an
   inline `<script>` at the top of `<head>` runs: a policy without `script-src-elem`,
   `script-src` or `default-src` allows it; one with a `'nonce-…'` allows it with that
   nonce; `'unsafe-inline'` allows it only when the list has no nonce, no hash and no
   `'strict-dynamic'` (CSP Level 3: those make browsers ignore `'unsafe-inline'`). When
   inline cannot run, a same-origin `<script src>` can when every policy allows
   `'self'` (or `*`, or the page's scheme) and none has `'strict-dynamic'`, which
   drops host and `'self'` sources. Hash-only policies allow neither: no guard.
   A `<meta http-equiv>` policy applies only to what follows it (CSP3 §3.3), and the
   guard is inserted before anything of `<head>`, so only headers are read here.

2. **Our own policy** (`CspHeaders`): the directives of `[html.csp]` (fetch directives
   only, never `script-src` on a page, so it cannot clash with the site's nonces), each
   listing `'self'`, `data:`, `blob:`, `html.first_party_hosts` and the allowed
   vendors' hosts for the visitor's consent (`host` and `*.host`, a host covered by a
   listed parent left out), reporting to `/__tag-gate/csp?k=<consent key>` by both
   `report-uri` and, on https pages, `report-to` (`Reporting-Endpoints`). Built once per consent key
   (the key also tells the report endpoint what the page was served under). A worker
   script's response gets the same sources under `script-src` as well (a worker has no
   inline script, and its `importScripts` is governed by `script-src`).

What the catalogue's URL prefixes become: a granted `host/path` entry whose host is not
allowed outright is listed as `host/path` and `host/path/` (CSP paths without a trailing
slash match exactly); query conditions cannot be written in CSP and are dropped (that
entry's path is allowed whatever the query). A refused URL prefix under a granted host
cannot be refused in CSP at all: the guard stops those, the CSP layer does not see them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from .consent import ConsentState
from .memo import Memo
from .vendors import Vendor

__all__ = [
    "CSP_DIRECTIVES",
    "CSP_ENDPOINT",
    "REPORTING_GROUP",
    "CspHeaders",
    "GuardDelivery",
    "decide_guard_delivery",
    "host_sources",
    "parse_policies",
]

CSP_DIRECTIVES: Final = ("connect-src", "img-src", "frame-src", "media-src", "font-src", "worker-src")
"""The directives the CSP layer may send (`[html.csp] directives` is a subset)."""

CSP_ENDPOINT: Final = "/__tag-gate/csp"
REPORTING_GROUP: Final = "tag-gate"

_SCRIPT_DIRECTIVES: Final = ("script-src-elem", "script-src", "default-src")
"""Which directive governs a `<script>` element, in fallback order (CSP3 §6.8.1)."""

_BUILTIN_KEY: Final = re.compile(r"f([01])a([01])d([01])s([01])g[01]")
"""`proxy.core.consent.consent_key` when the config has no categories of its own."""
_NONCE: Final = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")
_HOST_SOURCE: Final = re.compile(r"(?:([a-z][a-z0-9+.-]*)://)?(\*|\*\.[^/:]+|[^/:*]+)(?::(\d+|\*))?(/.*)?")

Directives = Mapping[str, tuple[str, ...]]


def parse_policies(values: Iterable[str]) -> list[Directives]:
    """The policies in `Content-Security-Policy` header values: each value may hold
    several, separated by commas; directive names are case-insensitive, the first of a
    repeated directive counts, and a policy without directives is dropped."""
    out: list[Directives] = []
    for value in values:
        for text in value.split(","):
            policy: dict[str, tuple[str, ...]] = {}
            for part in text.split(";"):
                tokens = part.split()
                if tokens:
                    policy.setdefault(tokens[0].lower(), tuple(tokens[1:]))
            if policy:
                out.append(policy)
    return out


@dataclass(frozen=True, slots=True)
class GuardDelivery:
    """How the guard goes into one page."""

    how: Literal["inline", "external", "none"]
    nonce: str | None = None
    """The nonce the inline (or external) `<script>` carries."""
    reason: str = ""
    """Why not inline (empty when inline): for the log line and the metric label."""


INLINE: Final = GuardDelivery("inline")
EXTERNAL: Final = GuardDelivery("external")


def _script_sources(policy: Directives) -> tuple[str, ...] | None:
    for name in _SCRIPT_DIRECTIVES:
        if name in policy:
            return policy[name]
    return None


def _allows_inline(sources: Sequence[str], nonce: str | None) -> bool:
    lowered = [s.lower() for s in sources]
    if nonce is not None and f"'nonce-{nonce}'" in sources:
        return True
    restricted = any(s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) for s in lowered)
    return "'unsafe-inline'" in lowered and not restricted and "'strict-dynamic'" not in lowered


def _allows_self(sources: Sequence[str], nonce: str | None, scheme: str) -> bool:
    if nonce is not None and f"'nonce-{nonce}'" in sources:
        return True
    lowered = [s.lower() for s in sources]
    if "'strict-dynamic'" in lowered:
        return False
    # A scheme source allows its scheme and the secure one it upgrades to (CSP3 §6.7.2.8).
    schemes = {f"{scheme}:", "http:"} if scheme == "https" else {"http:"}
    return "'self'" in lowered or "*" in lowered or not schemes.isdisjoint(lowered)


_DELIVERIES: Final[Memo[tuple[tuple[str, ...], str, bool], GuardDelivery]] = Memo(1024, 1 << 20)
"""`decide_guard_delivery` per policy text, with its nonces written as their place."""


def decide_guard_delivery(csp_values: Sequence[str], scheme: str = "https", *, external: bool = False) -> GuardDelivery:
    """Inline with a nonce (or none), from `'self'`, or not at all, under the site's
    enforced policies (see the module docstring). `scheme` is the page's. `external`:
    the operator prefers the script from `'self'` (cached by the browser) wherever the
    policies let it run; `reason` is then empty.

    Memoised by the policies' text with each distinct nonce replaced by its place
    (`'nonce-0'`, `'nonce-1'`, ...): a strict-CSP site sends a new nonce with every
    response, and its policy is otherwise the same on every page."""
    if not csp_values:
        return EXTERNAL if external else INLINE  # most pages: no policy at all
    nonces: dict[str, str] = {}

    def place(m: re.Match[str]) -> str:
        return f"'nonce-{nonces.setdefault(m.group(1), str(len(nonces)))}'"

    values = tuple(_NONCE.sub(place, v) if "'nonce-" in v else v for v in csp_values)
    key = (values, scheme, external)
    found = _DELIVERIES.table.get(key)
    if found is None:
        found = _DELIVERIES.put(key, _decide_delivery(values, scheme, external), sum(map(len, values)))
    if found.nonce is None:
        return found
    real = {n: v for v, n in nonces.items()}
    return GuardDelivery(found.how, real[found.nonce], found.reason)


def _decide_delivery(csp_values: Sequence[str], scheme: str, external: bool) -> GuardDelivery:
    policies = [p for p in parse_policies(csp_values) if _script_sources(p) is not None]
    if not policies:
        return EXTERNAL if external else INLINE
    # Every nonce any policy names is a candidate; one must satisfy every policy.
    candidates: list[str | None] = []
    for policy in policies:
        for source in _script_sources(policy) or ():
            m = _NONCE.fullmatch(source)
            if m and m.group(1) not in candidates:
                candidates.append(m.group(1))
    candidates.append(None)
    inline = next((n for n in candidates if all(_allows_inline(_script_sources(p) or (), n) for p in policies)), "")
    if inline != "" and not external:
        return GuardDelivery("inline", inline)
    for nonce in candidates:
        if all(_allows_self(_script_sources(p) or (), nonce, scheme) for p in policies):
            return GuardDelivery("external", nonce, "" if external else "csp_inline_blocked")
    if inline != "":
        return GuardDelivery("inline", inline)
    return GuardDelivery("none", None, "csp_blocks_guard")


# --------------------------------------------------------------------------- our policy


def host_sources(hosts: Iterable[str]) -> list[str]:
    """`host *.host` for each host, hosts under a listed parent left out (sorted)."""
    unique = sorted({h.lower().strip(".") for h in hosts if h.strip(".")}, key=lambda h: (h.count("."), h))
    kept: list[str] = []
    parents: set[str] = set()
    for host in unique:
        labels = host.split(".")
        if any(".".join(labels[i:]) in parents for i in range(1, len(labels))):
            continue
        parents.add(host)
        kept.append(host)
    out: list[str] = []
    for host in sorted(kept):
        out += [host, f"*.{host}"]
    return out


def _url_sources(urls: Iterable[str], allowed_hosts: Collection[str]) -> list[str]:
    """CSP sources for catalogue URL prefixes (`host/path[?param=glob]`) whose host is
    not allowed outright (see the module docstring)."""
    out: list[str] = []
    for url in urls:
        host, _, path = url.partition("?")[0].partition("/")
        host = host.lower()
        labels = host.split(".")
        if any(".".join(labels[i:]) in allowed_hosts for i in range(len(labels))):
            continue
        path = "/" + path
        for h in (host, f"*.{host}"):
            out.append(f"{h}{path}")
            if not path.endswith("/"):
                out.append(f"{h}{path}/")
    return sorted(set(out))


@dataclass(frozen=True, slots=True)
class CspLayer:
    """`[html.csp]` as the header builder needs it."""

    mode: Literal["report-only", "enforce", "off"] = "report-only"
    directives: tuple[str, ...] = CSP_DIRECTIVES
    vendors: Literal["granted", "none"] | tuple[str, ...] = "none"
    """Whose hosts are allowed beside the site's own: every granted vendor of the
    catalogue, none, or these vendor ids when granted."""


class CspHeaders:
    """Our policy per consent key, for one config (see the module docstring).

    `value(consent, worker)` is the header value, memoised per key; `granted(key)` the
    granted categories a key stood for (the report endpoint's reading of `?k=`)."""

    def __init__(self, layer: CspLayer, vendors: Sequence[Vendor], first_party_hosts: Iterable[str]) -> None:
        self.layer = layer
        self.header = "Content-Security-Policy" if layer.mode == "enforce" else "Content-Security-Policy-Report-Only"
        self._vendors = vendors
        self._own = ["'self'", "data:", "blob:", *host_sources(first_party_hosts)]
        self._memo: Memo[tuple[str, bool, bool], str] = Memo(512, 8 << 20)
        self._keys: dict[str, frozenset[str]] = {}

    def sources(self, granted: Collection[str]) -> list[str]:
        """The source list for a visitor who granted `granted` (essential always)."""
        chosen = self.layer.vendors
        if chosen == "none":
            return list(self._own)
        ids = None if chosen == "granted" else set(chosen)
        allowed = [
            v
            for v in self._vendors
            if (v.category == ESSENTIAL or v.category in granted) and (ids is None or v.id in ids)
        ]
        hosts = host_sources(h for v in allowed for h in v.hosts)
        plain = {h for h in hosts if not h.startswith("*.")}
        urls = _url_sources((u for v in allowed for u in v.urls), plain)
        return [*self._own, *hosts, *urls]

    def value(self, consent: ConsentState, worker: bool = False, secure: bool = True) -> str:
        """The header value for this visitor (a worker script's adds `script-src`).
        `report-to` only on a page served over https: the Reporting API delivers only
        from secure contexts, and Chromium ignores `report-uri` whenever `report-to` is
        present, so an http page would report nothing at all."""
        key = (consent.key, worker, secure)
        hit = self._memo.table.get(key)
        if hit is not None:
            return hit
        if len(self._keys) < 4096:
            self._keys.setdefault(consent.key, consent.granted)
        sources = " ".join(self.sources(consent.granted))
        parts = [f"{d} {sources}" for d in self.layer.directives]
        if worker:
            parts.append(f"script-src {sources} 'unsafe-eval' 'wasm-unsafe-eval'")
        parts.append(f"report-uri {CSP_ENDPOINT}?k={consent.key}")
        if secure:
            parts.append(f"report-to {REPORTING_GROUP}")
        text = "; ".join(parts)
        return self._memo.put(key, text, len(text))

    @staticmethod
    def endpoints(consent: ConsentState) -> str:
        """The `Reporting-Endpoints` value naming our report endpoint for this key."""
        return f'{REPORTING_GROUP}="{CSP_ENDPOINT}?k={consent.key}"'

    def granted(self, key: str) -> frozenset[str] | None:
        """What a consent key stood for: one this config wrote, or any key of the
        built-in categories alone (`f0a1d0s0g0`); None when it cannot be known."""
        hit = self._keys.get(key)
        if hit is None:
            m = _BUILTIN_KEY.fullmatch(key)
            if m is not None:
                names = (FUNCTIONAL, ANALYTICS, ADVERTISING, SOCIAL)
                hit = frozenset({ESSENTIAL, *(n for n, bit in zip(names, m.groups(), strict=True) if bit == "1")})
        return hit
