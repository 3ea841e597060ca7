"""Response header rules for consent-dependent output (headers only, no IO).

When what the visitor gets depends on their consent (a gated HTML page, or any
response whose Set-Cookie lines were filtered), the response must say so: shared
caches must not store it, the browser's cache must key it on the consent cookie, and
its validators must not let a 304 hand one visitor's version to another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from aiohttp import hdrs
from multidict import CIMultiDict

HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})

BODYLESS_STATUSES: Final = frozenset({204, 304})
"""Final statuses that never carry a body (with 1xx and any answer to HEAD)."""

REPRESENTATION_HEADERS: Final = (
    hdrs.CONTENT_LENGTH,
    hdrs.CONTENT_MD5,
    "Digest",
    "Repr-Digest",
    "Content-Digest",
    hdrs.ACCEPT_RANGES,
    hdrs.CONTENT_RANGE,
)
"""Headers describing the upstream's bytes; wrong once the body is rewritten."""

SHARED_CACHE_DIRECTIVES: Final = frozenset({"public", "s-maxage", "proxy-revalidate"})

VARY_ON: Final = ("Cookie", "Sec-GPC")
"""What consent is read from."""

ETAG_MARK: Final = "-tg"
_ETAG_RE: Final = re.compile(r'\s*(W/)?"([^"]*)"\s*')
_NONCE_RE: Final = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")
_CHARSET_RE: Final = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def is_html(content_type: str | None) -> bool:
    return media_type(content_type) in HTML_TYPES


def charset_of(content_type: str | None) -> str | None:
    m = _CHARSET_RE.search(content_type or "")
    return m.group(1).lower() if m else None


ASCII_INCOMPATIBLE: Final = ("utf-16", "utf-32", "ucs-2", "ucs-4", "utf-7")


def ascii_compatible(charset: str | None) -> bool:
    """Whether markup bytes in this charset are ASCII (so the gate can read the tags)."""
    return charset is None or not charset.startswith(ASCII_INCOMPATIBLE)


def make_private(headers: CIMultiDict[str]) -> None:
    """Cache-Control: keep `no-store`/`no-cache`/`max-age` for the browser, drop what lets
    shared caches store the response, and add `private`."""
    if hdrs.CACHE_CONTROL not in headers:
        headers[hdrs.CACHE_CONTROL] = "private"  # the usual case, as the loop below would say
        return
    directives: list[str] = []
    for value in headers.getall(hdrs.CACHE_CONTROL, ()):
        for item in value.split(","):
            item = item.strip()
            name = item.partition("=")[0].strip().lower()
            if item and name not in SHARED_CACHE_DIRECTIVES and name != "private":
                directives.append(item)
    if "no-store" not in (d.lower() for d in directives):
        directives.insert(0, "private")
    headers[hdrs.CACHE_CONTROL] = ", ".join(directives)


def add_vary(headers: CIMultiDict[str], names: Iterable[str] = VARY_ON) -> None:
    """Append to Vary (never replace it), without repeating a name already there."""
    names = tuple(names)
    if not names:
        return
    if hdrs.VARY not in headers:
        headers[hdrs.VARY] = ", ".join(names)
        return
    present: list[str] = []
    for value in headers.getall(hdrs.VARY, ()):
        present.extend(v.strip() for v in value.split(",") if v.strip())
    if "*" in present:
        return
    lower = {p.lower() for p in present}
    present.extend(n for n in names if n.lower() not in lower)
    headers[hdrs.VARY] = ", ".join(present)


def consent_etag(etag: str, key: str) -> str:
    """A weak validator naming both the upstream's representation and the consent."""
    m = _ETAG_RE.fullmatch(etag)
    opaque = m.group(2) if m else etag.strip().replace('"', "")
    return f'W/"{opaque}{ETAG_MARK}{key}"'


def upstream_if_none_match(value: str, key: str) -> tuple[str | None, bool]:
    """Translate a client's If-None-Match for the upstream.

    Tags tag-gate issued for this consent key go back to the upstream's form; tags
    issued under another consent are dropped, so the visitor gets a fresh 200 instead
    of a 304 for a page filtered differently. Returns (new value or None, whether any
    tag-gate tag was seen: then a 304 must get the consent-dependent headers).
    """
    if value.strip() == "*":
        return value, False
    kept: list[str] = []
    ours = False
    for part in _split_tags(value):
        m = _ETAG_RE.fullmatch(part)
        if m is None:
            kept.append(part)
            continue
        weak, opaque = m.group(1) or "", m.group(2)
        base, mark, tag_key = opaque.rpartition(ETAG_MARK)
        if mark and weak and tag_key and all(c.isalnum() for c in tag_key):
            ours = True
            if tag_key == key:
                kept.append(f'"{base}"')
            continue
        kept.append(part.strip())
    return (", ".join(kept) if kept else None), ours


def _split_tags(value: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def csp_nonce(headers: CIMultiDict[str]) -> str | None:
    """The first script nonce in the response's Content-Security-Policy, if any."""
    for value in headers.getall(hdrs.CONTENT_SECURITY_POLICY, ()):
        m = _NONCE_RE.search(value)
        if m:
            return m.group(1)
    return None


def fail_safe_csp(allowed_hosts: Iterable[str]) -> str:
    """A Content-Security-Policy that lets the page render but keeps third parties out:
    only the site itself and the listed hosts (first-party and essential vendors).

    The host list appears once, in `default-src`, which every fetch directive falls back
    to; inline code and styles stay allowed so the page still works. Hosts already
    covered by a listed parent domain are left out to keep the header short.
    """
    hosts = sorted(set(allowed_hosts), key=lambda h: (h.count("."), h))
    kept: list[str] = []
    for host in hosts:
        if not any(host.endswith("." + parent) for parent in kept):
            kept.append(host)
    sources = "".join(f" https://{h} https://*.{h}" for h in sorted(kept))
    return (
        f"default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:{sources}; "
        "object-src 'none'; base-uri 'self'; form-action 'self'"
    )
