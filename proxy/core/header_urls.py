"""URLs in response headers that make the browser contact a host by itself (pure).

Each `filter_*` takes a header value and `keep(url) -> bool` (the policy's verdict for
one URL, relative ones included) and returns the value without what `keep` refuses:
`(new value or None when nothing is left, whether anything was removed)`. Values the
browser would reject as malformed are removed when they might name a host, since they
cannot be checked (the browser ignores them, so nothing is lost). Headers covered:

- `Refresh` (`parse_refresh`): a navigation after a delay;
- `Content-Security-Policy(-Report-Only)` `report-uri`: violation reports POSTed there;
- `Reporting-Endpoints` and the older `Report-To`: where every Reporting API report
  (CSP `report-to`, COOP/COEP, Permissions-Policy, NEL, deprecations, crashes) goes;
- `Alt-Svc`: an alternative service on another host is contacted directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Final

from .quoted import split_outside_quotes

Keep = Callable[[str], bool]

_ASCII_WS: Final = " \t\n\f\r"


def parse_refresh(value: str) -> tuple[bool, list[str]]:
    """A `Refresh` value as the HTML standard's "shared declarative refresh steps"
    read it: (whether it parses, the URLs the browser may navigate to). No URL means
    a reload of the same document. Besides the URL the standard extracts (after
    `url=`, quotes stripped), the whole remainder after the separator is listed too,
    so that a browser reading it more loosely cannot reach a host that was not checked."""
    s = value
    pos = 0
    n = len(s)
    while pos < n and s[pos] in _ASCII_WS:
        pos += 1
    digits = pos
    while pos < n and s[pos].isascii() and s[pos].isdigit():
        pos += 1
    if pos == digits and (pos >= n or s[pos] != "."):
        return False, []
    while pos < n and (s[pos] == "." or (s[pos].isascii() and s[pos].isdigit())):
        pos += 1
    if pos >= n:
        return True, []
    if s[pos] not in ";," and s[pos] not in _ASCII_WS:
        return False, []
    while pos < n and s[pos] in _ASCII_WS:
        pos += 1
    if pos < n and s[pos] in ";,":
        pos += 1
    while pos < n and s[pos] in _ASCII_WS:
        pos += 1
    if pos >= n:
        return True, []
    remainder = s[pos:]
    url = remainder
    m = re.match(r"[Uu][Rr][Ll][ \t\n\f\r]*=[ \t\n\f\r]*", remainder)
    if m is not None:
        url = remainder[m.end() :]
        if url[:1] in ("'", '"'):
            quote = url[0]
            url = url[1:].partition(quote)[0]
    return True, list(dict.fromkeys([url.strip(_ASCII_WS), remainder.strip(_ASCII_WS)]))


def split_quoted(value: str, separator: str) -> list[str]:
    """`value` split on `separator` outside double-quoted strings (backslash escapes
    the next character inside them), parts trimmed, empty ones left out."""
    parts, _ = split_outside_quotes(value, separator)
    return [p for p in (p.strip(" \t") for p in parts) if p]


def filter_csp(value: str, keep: Keep) -> tuple[str | None, bool]:
    """A CSP header value (policies joined by `,`, directives by `;`) without the
    `report-uri` URLs `keep` refuses; a `report-uri` left empty is removed. Nothing
    else changes (`report-to` names a group: `filter_reporting_endpoints` decides
    where it goes)."""
    if "report-uri" not in value.lower():
        return value, False  # most policies (directive names are case-insensitive)
    changed = False
    policies: list[str] = []
    for policy in value.split(","):
        directives: list[str] = []
        for directive in policy.split(";"):
            tokens = directive.split()
            if tokens and tokens[0].lower() == "report-uri":
                urls = [u for u in tokens[1:] if keep(u)]
                if len(urls) != len(tokens) - 1:
                    changed = True
                    if urls:
                        directives.append(" ".join([tokens[0], *urls]))
                    continue
            directives.append(directive.strip(" \t"))
        policies.append("; ".join(d for d in directives if d))
    if not changed:
        return value, False
    kept = ", ".join(p for p in policies if p)
    return kept or None, True


_SF_KEY: Final = re.compile(r"[a-z*][a-z0-9_.*-]*")


def _sf_string(text: str) -> str | None:
    """The content of a structured-field string (RFC 9651 §3.3.3), or None."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    out: list[str] = []
    escape = False
    for c in text[1:-1]:
        if escape:
            if c not in '"\\':
                return None
            out.append(c)
            escape = False
        elif c == "\\":
            escape = True
        elif c == '"' or not " " <= c <= "~":
            return None
        else:
            out.append(c)
    return None if escape else "".join(out)


def filter_reporting_endpoints(value: str, keep: Keep) -> tuple[str | None, bool]:
    """`Reporting-Endpoints: name="url", ...` (a structured-field dictionary) without
    the members whose URL `keep` refuses; members that do not parse are removed too."""
    kept: list[str] = []
    changed = False
    for member in split_quoted(value, ","):
        key, eq, rest = member.partition("=")
        url = _sf_string(rest.split(";", 1)[0].strip(" \t")) if eq else None
        if url is None or _SF_KEY.fullmatch(key.strip(" \t")) is None or not keep(url):
            changed = True
            continue
        kept.append(member)
    if not changed:
        return value, False
    return (", ".join(kept) or None), True


def filter_report_to(value: str, keep: Keep) -> tuple[str | None, bool]:
    """The legacy `Report-To` header (JSON objects joined by `,`) without the endpoints
    whose `url` `keep` refuses, and without groups left empty. A value that is not
    that JSON is removed whole (the browser ignores it)."""
    try:
        groups = json.loads(f"[{value}]")
    except (ValueError, RecursionError):
        return None, True
    if not isinstance(groups, list):
        return None, True
    changed = False
    out: list[object] = []
    for group in groups:
        endpoints = group.get("endpoints") if isinstance(group, dict) else None
        if not isinstance(endpoints, list):
            changed = True
            continue
        ok = [e for e in endpoints if isinstance(e, dict) and isinstance(e.get("url"), str) and keep(e["url"])]
        if len(ok) != len(endpoints):
            changed = True
        if ok:
            out.append({**group, "endpoints": ok})
    if not changed:
        return value, False
    return (", ".join(json.dumps(g, separators=(",", ":")) for g in out) or None), True


def filter_alt_svc(value: str, keep: Keep) -> tuple[str | None, bool]:
    """`Alt-Svc` without the alternatives on a host `keep` refuses (the browser would
    connect there directly). `clear` stays; an alternative that does not parse goes."""
    if value.strip(" \t").lower() == "clear":
        return value, False
    kept: list[str] = []
    changed = False
    for alternative in split_quoted(value, ","):
        protocol, eq, rest = alternative.partition("=")
        authority = _sf_string(rest.split(";", 1)[0].strip(" \t")) if eq else None
        if authority is None:
            changed = True
            continue
        host = authority.rpartition(":")[0]
        if host and not keep(f"https://{host}/"):
            changed = True
            continue
        kept.append(alternative)
    if not changed:
        return value, False
    return (", ".join(kept) or None), True
