"""Cookie parsing and filtering, in both directions (pure: no IO, no aiohttp).

Request side: the `Cookie` header is read into (name, value) pairs, and refused pairs
are stripped while every surviving pair keeps its exact bytes. Response side:
`Set-Cookie` lines are read the way a browser reads them (RFC 6265bis, section "The
Set-Cookie Header Field") for their name, value and the few attributes that matter
here, and are then kept or dropped whole: a line is never re-serialised or folded.
Withdrawal: expiring `Set-Cookie` lines for cookies the browser still holds, on the
host and on every parent domain down to the registrable one (Public Suffix List).
Client hints: high-entropy hints are removed from `Accept-CH` / `Critical-CH`.

Nothing here knows categories: callers pass the classification in as a callable.
The only data read is the Public Suffix List bundled with `publicsuffixlist`, loaded
lazily on the first withdrawal and cached for the life of the process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "DELETION_EXPIRES",
    "HIGH_ENTROPY_CLIENT_HINTS",
    "LOW_ENTROPY_CLIENT_HINTS",
    "CookiePrefix",
    "FilterResult",
    "SetCookie",
    "StripResult",
    "cookie_key",
    "expire_cookies",
    "filter_accept_ch",
    "filter_set_cookies",
    "parse_cookie_date",
    "parse_cookie_header",
    "parse_set_cookie",
    "strip_cookie_header",
]

# RFC 6265bis limits: name + value at most 4096 octets (the whole line is ignored
# beyond it), an attribute value at most 1024 octets (that attribute alone is ignored).
MAX_NAME_VALUE_OCTETS: Final = 4096
MAX_ATTRIBUTE_VALUE_OCTETS: Final = 1024

DELETION_EXPIRES: Final = "Thu, 01 Jan 1970 00:00:00 GMT"
"""The Expires value of every deletion line tag-gate writes (for pre-Max-Age agents)."""

_WSP: Final = " \t"

# 6265bis: a set-cookie-string holding a CTL other than HTAB is ignored entirely.
_CTL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Where an older, lenient agent cut a line (it stored the part before NUL/CR/LF).
_LEGACY_TRUNCATE_RE: Final = re.compile(r"[\x00\r\n]")
_MAX_AGE_RE: Final = re.compile(r"-?[0-9]+")
_INT64_MIN: Final = -(2**63)

# RFC 6265 section 5.1.1, cookie-date.
_DATE_DELIMITERS_RE: Final = re.compile(r"[\x09\x20-\x2f\x3b-\x40\x5b-\x60\x7b-\x7e]+")
_DATE_TIME_RE: Final = re.compile(r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[^0-9].*)?", re.DOTALL)
_DATE_DAY_RE: Final = re.compile(r"([0-9]{1,2})(?:[^0-9].*)?", re.DOTALL)
_DATE_YEAR_RE: Final = re.compile(r"([0-9]{2,4})(?:[^0-9].*)?", re.DOTALL)
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}

# A host name we are willing to write into a Domain attribute (after IDNA and lowercasing).
_DOMAIN_HOST_RE: Final = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*", re.ASCII)
# A cookie name we can target with a deletion line: no CTL, no `;` or `=`, not padded.
_UNTARGETABLE_NAME_RE: Final = re.compile(r"[\x00-\x1f\x7f;=]|^[ \t]|[ \t]$")


class CookiePrefix(StrEnum):
    """A cookie-name prefix with storage requirements, matched case-insensitively
    (RFC 6265bis and current browsers); the value is the registered spelling."""

    NONE = ""
    SECURE = "__Secure-"
    HOST = "__Host-"


def _name_prefix(name: str) -> CookiePrefix:
    head = name[:9].lower()
    if head.startswith("__host-"):
        return CookiePrefix.HOST
    if head == "__secure-":
        return CookiePrefix.SECURE
    return CookiePrefix.NONE


def cookie_key(name: str) -> str:
    """The classification key for a cookie name: the name with a `__Host-` /
    `__Secure-` prefix rewritten to its registered case, otherwise unchanged.

    Browsers apply the prefix rules case-insensitively, so `__host-x` is held to the
    same requirements as `__Host-x`; everything else about a name is case-sensitive
    (`_GA` is not `_ga`) and quotes are part of the name (`"_ga"` is not `_ga`).
    """
    prefix = _name_prefix(name)
    if prefix is CookiePrefix.NONE:
        return name
    return prefix.value + name[len(prefix.value) :]


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One `Set-Cookie` line as a browser reads it. `line` is the original object,
    which is what gets forwarded; the other fields are for deciding only.

    - `name`, `value`: trimmed of SP/HTAB, otherwise as sent (quotes kept, case kept).
      A pair without `=` is a nameless cookie: `name == ""`, `value` the whole pair.
    - `key`: what to classify on (`cookie_key` of the name the site and scripts will
      read back). For a named cookie that is its name. A nameless cookie is sent back
      as its bare value, so `=_ga=1` comes back as `_ga=1` and gets key `_ga`, while
      `_ga` (no `=`) comes back nameless and gets key `""`: classify `""` as
      non-essential.
    - `prefix`: the name's prefix, matched case-insensitively.
    - `deletion`: the browser certainly expires the cookie on receipt (see
      `parse_set_cookie`).
    - `domain`: the last non-empty Domain attribute, lowercased, one leading dot
      removed; None without one. `path`: the last Path attribute if it starts with
      `/`; None when absent or when the browser falls back to the default path.
    """

    line: str
    name: str
    value: str
    key: str
    prefix: CookiePrefix
    deletion: bool
    domain: str | None
    path: str | None
    secure: bool
    http_only: bool

    @property
    def nameless(self) -> bool:
        """True for a cookie without a name (`Set-Cookie: foo` or `=foo`)."""
        return not self.name


def _octets(text: str) -> int:
    """Length in octets on the wire; aiohttp decodes header bytes as UTF-8 with
    surrogateescape, so that is how they are counted back."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def parse_cookie_date(text: str) -> datetime:
    """Parse a cookie date (an `Expires` value) by the RFC 6265 section 5.1.1
    algorithm, which browsers follow; returns an aware UTC datetime.

    The algorithm is deliberately forgiving (any order, any delimiters, two-digit
    years: 70-99 → 19xx, 00-69 → 20xx) and fails only on a missing or out-of-range
    part or an impossible date: then it raises ValueError, and the attribute is
    ignored as a browser would ignore it.
    """
    hms: tuple[int, int, int] | None = None
    day: int | None = None
    month: int | None = None
    year: int | None = None
    for token in _DATE_DELIMITERS_RE.split(text):
        if not token:
            continue
        if hms is None and (m := _DATE_TIME_RE.fullmatch(token)):
            hms = (int(m[1]), int(m[2]), int(m[3]))
        elif day is None and (m := _DATE_DAY_RE.fullmatch(token)):
            day = int(m[1])
        elif month is None and token[:3].lower() in _MONTHS:
            month = _MONTHS[token[:3].lower()]
        elif year is None and (m := _DATE_YEAR_RE.fullmatch(token)):
            year = int(m[1])
    if hms is None or day is None or month is None or year is None:
        raise ValueError(f"incomplete cookie date: {text!r}")
    if 70 <= year <= 99:
        year += 1900
    elif 0 <= year <= 69:
        year += 2000
    hour, minute, second = hms
    if not 1 <= day <= 31 or year < 1601 or hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"cookie date out of range: {text!r}")
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)  # ValueError on 31 Feb


def _split_pair(pair: str) -> tuple[str, str]:
    """6265bis name/value split of a name-value-pair string, both trimmed."""
    name, eq, value = pair.partition("=")
    if not eq:
        return "", pair.strip(_WSP)
    return name.strip(_WSP), value.strip(_WSP)


def _parse(line: str, now: datetime | None, *, strict: bool) -> SetCookie | None:
    """The 6265bis reading (`strict`), or the lenient one `filter_set_cookies` uses for
    lines 6265bis ignores: cut at NUL/CR/LF as older agents did, no size limit, and
    never a deletion."""
    text = line
    if strict:
        if _CTL_RE.search(line):
            return None
    elif m := _LEGACY_TRUNCATE_RE.search(line):
        text = line[: m.start()]
    pair, _, attributes = text.partition(";")
    name, value = _split_pair(pair)
    if not name and not value:
        return None
    if strict and _octets(name) + _octets(value) > MAX_NAME_VALUE_OCTETS:
        return None

    domain: str | None = None
    path: str | None = None
    secure = http_only = False
    last_max_age: str | None = None
    last_expires: str | None = None
    if attributes:
        for av in attributes.split(";"):
            av_name, _, av_value = av.partition("=")
            av_name = av_name.strip(_WSP).lower()
            av_value = av_value.strip(_WSP)
            if _octets(av_value) > MAX_ATTRIBUTE_VALUE_OCTETS:
                continue
            if av_name == "max-age":
                last_max_age = av_value
            elif av_name == "expires":
                last_expires = av_value
            elif av_name == "domain":
                # 6265bis: an empty Domain attribute is ignored entirely.
                if av_value:
                    domain = (av_value[1:] if av_value.startswith(".") else av_value).lower()
            elif av_name == "path":
                path = av_value if av_value.startswith("/") else None
            elif av_name == "secure":
                secure = True
            elif av_name == "httponly":
                http_only = True

    if name:
        key = cookie_key(name)
    else:
        # A nameless cookie is serialised back as its value alone.
        read_name, eq, _ = value.partition("=")
        key = cookie_key(read_name.strip(_WSP)) if eq else ""
    return SetCookie(
        line=line,
        name=name,
        value=value,
        key=key,
        prefix=_name_prefix(name),
        deletion=strict and _is_deletion(last_max_age, last_expires, now),
        domain=domain,
        path=path,
        secure=secure,
        http_only=http_only,
    )


def _is_deletion(max_age: str | None, expires: str | None, now: datetime | None) -> bool:
    """True only when every browser expires the cookie on receipt.

    The spec keeps the last *valid* Max-Age (or Expires) and lets Max-Age win;
    Chromium keeps the last *occurrence* and falls back to Expires when it does not
    parse. A "deletion" passes the filter unclassified, so claim one only where both
    readings agree: the last Max-Age is a plain integer <= 0, or there is no Max-Age
    at all and the last Expires parses to a time not after `now`.
    """
    if max_age is not None:
        if not _MAX_AGE_RE.fullmatch(max_age):
            return False
        seconds = int(max_age)
        return _INT64_MIN <= seconds <= 0
    if expires is None:
        return False
    try:
        expiry = parse_cookie_date(expires)
    except ValueError:
        return False
    return expiry <= (now if now is not None else datetime.now(UTC))


def parse_set_cookie(line: str, *, now: datetime | None = None) -> SetCookie | None:
    """Read one `Set-Cookie` field value the way a browser does (RFC 6265bis).

    Returns None exactly when a 6265bis browser ignores the line entirely: it holds a
    control character other than HTAB, or name and value are both empty after
    trimming, or name plus value exceed 4096 octets. Everything else is a cookie,
    including nameless ones. Never raises.

    `deletion` is judged against `now` (an aware datetime; default: the current time):
    Max-Age <= 0, or an Expires date (RFC 6265 cookie-date, commas included) not after
    `now`, with the conservative reading described in `_is_deletion`.
    """
    return _parse(line, now, strict=True)


@dataclass(frozen=True, slots=True)
class FilterResult:
    """The outcome of `filter_set_cookies`: `kept` holds the very input objects, in
    input order; `dropped` the parsed cookies of the lines removed (for logs/metrics)."""

    kept: tuple[str, ...]
    dropped: tuple[SetCookie, ...]


def filter_set_cookies(
    lines: Sequence[str],
    keep: Callable[[SetCookie], bool],
    *,
    now: datetime | None = None,
) -> FilterResult:
    """Keep or drop each upstream `Set-Cookie` line, whole. Runs at the headers stage.

    - Each line is one field value (the caller reads them with `getall`, never joined),
      and a kept line is returned as the same object, unchanged and in order.
    - Deletions (`SetCookie.deletion`) always pass, without asking `keep`: removing a
      cookie never tracks anyone.
    - Lines a 6265bis browser ignores: if they set nothing under any reading (empty
      name and value) they pass unchanged. Otherwise (control characters, oversize)
      `keep` still decides, on a lenient reading of the line (cut at NUL/CR/LF, no size
      limit), because an older or laxer browser might store them: fail closed.
    """
    if now is None:
        now = datetime.now(UTC)
    kept: list[str] = []
    dropped: list[SetCookie] = []
    for line in lines:
        cookie = _parse(line, now, strict=True)
        if cookie is None:
            cookie = _parse(line, now, strict=False)
            if cookie is None:
                kept.append(line)
                continue
        elif cookie.deletion:
            kept.append(line)
            continue
        if keep(cookie):
            kept.append(line)
        else:
            dropped.append(cookie)
    return FilterResult(tuple(kept), tuple(dropped))


def parse_cookie_header(value: str) -> list[tuple[str, str]]:
    """Split one request `Cookie` header value into (name, value) pairs, in order.

    Pairs are separated by `;` (never `,`). Whitespace around names and values is
    trimmed. A pair without `=` is a nameless cookie: name `""`, value the whole pair
    (what browsers send for `Set-Cookie: foo`). Empty segments are skipped. Values are
    returned as sent: no unquoting, no percent-decoding.
    """
    pairs: list[tuple[str, str]] = []
    for segment in value.split(";"):
        segment = segment.strip(" \t")
        if not segment:
            continue
        name, eq, val = segment.partition("=")
        if eq:
            pairs.append((name.strip(" \t"), val.strip(" \t")))
        else:
            pairs.append(("", segment))
    return pairs


@dataclass(frozen=True, slots=True)
class StripResult:
    """The outcome of `strip_cookie_header`.

    `value` is the `Cookie` header to forward (None: send none). `stripped` lists
    the names of the removed pairs as the browser sent them (trimmed; `""` for a
    nameless pair), in order, repeats included: feed them to `expire_cookies`.
    """

    value: str | None
    stripped: tuple[str, ...]


def strip_cookie_header(values: Sequence[str], keep: Callable[[str], bool]) -> StripResult:
    """Remove refused pairs from the request's `Cookie` header(s). Runs before the
    request is forwarded.

    Several `Cookie` fields are joined with `"; "`. Pairs are split on `;` only.
    `keep` gets the pair's `cookie_key` (`""` for a nameless pair). A surviving pair
    keeps its exact characters (quotes, inner spaces), order is kept, and only the
    whitespace around pairs and empty segments are normalised when something is
    removed or several fields are joined; a single field with nothing removed is
    returned as the same object.
    """
    kept: list[str] = []
    stripped: list[str] = []
    for value in values:
        for segment in value.split(";"):
            pair = segment.strip(_WSP)
            if not pair:
                continue
            name, eq, _ = pair.partition("=")
            name = name.rstrip(_WSP) if eq else ""
            if keep(cookie_key(name)):
                kept.append(pair)
            else:
                stripped.append(name)
    if not kept:
        return StripResult(None, tuple(stripped))
    if not stripped and len(values) == 1:
        return StripResult(values[0], ())
    return StripResult("; ".join(kept), tuple(stripped))


@functools.cache
def _psl() -> PublicSuffixList:
    # Imported and parsed on first use only (~50 ms): most requests never withdraw.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def _cookie_domains(host: str) -> tuple[str, ...]:
    """The Domain attribute values a cookie for `host` can carry, registrable domain
    first and then each longer suffix up to `host` itself; `()` when only a host-only
    cookie is possible (IP literal, localhost, public suffix, unusable name)."""
    h = host.strip(_WSP).lower()
    if not h or h.startswith("["):  # empty, or a bracketed IPv6 literal
        return ()
    colons = h.count(":")
    if colons > 1:  # bare IPv6
        return ()
    if colons == 1:
        h, _, port = h.partition(":")
        if port and not port.isdigit():
            return ()
    if h.endswith("."):
        # An absolute name is keyed with its dot by browsers; only host-only is safe.
        return ()
    if not h.isascii():
        try:
            h = h.encode("idna").decode("ascii")
        except UnicodeError:
            return ()
    if not _DOMAIN_HOST_RE.fullmatch(h) or h == "localhost":
        return ()
    last_label = h.rpartition(".")[2]
    if last_label.isdigit() or last_label.startswith("0x"):
        return ()  # an IPv4 literal (or what a URL parser would take for one)
    registrable = _psl().privatesuffix(h)
    if not isinstance(registrable, str):  # `h` is itself a public suffix
        return ()
    extra = h[: -len(registrable)].rstrip(".").split(".") if h != registrable else []
    domains = [registrable]
    for label in reversed(extra):
        domains.append(f"{label}.{domains[-1]}")
    return tuple(domains)


def expire_cookies(names: Iterable[str], host: str, secure: bool, cap: int) -> list[str]:
    """`Set-Cookie` lines that expire the named cookies on the visitor's browser, for
    withdrawal of consent. Pure; the caller adds each line with `headers.add`.

    For each name (first occurrence only, in the order given): a host-only line (no
    Domain), then one line per Domain the cookie may have been set on: the
    registrable domain first (where trackers usually put theirs, so a cap keeps the
    likeliest), then each longer suffix up to the host itself (a `Domain=host` cookie
    is a different cookie from the host-only one). The registrable domain comes from
    the Public Suffix List: never a public suffix; IP literals, `localhost` and
    unusual hosts get the host-only line only. The port is ignored, the host
    lowercased, IDN hosts converted to their ASCII form.

    Every line is `name=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/`
    plus `Domain=...` where applicable and `Secure` when `secure` (an HTTPS request).
    Prefixed names get what the browser demands of them: `__Host-` host-only with
    Secure, `__Secure-` always Secure. Cookies with other paths are not reached.

    Nameless cookies cannot be targeted and are skipped, as are names that could not
    have come from a browser (`;`, `=`, control characters, surrounding blanks, too
    long). At most `cap` lines are returned.
    """
    if cap <= 0:
        return []
    lines: list[str] = []
    seen: set[str] = set()
    domains: tuple[str, ...] | None = None
    for name in names:
        if name in seen or not name or _UNTARGETABLE_NAME_RE.search(name):
            continue
        seen.add(name)
        if _octets(name) > MAX_NAME_VALUE_OCTETS:
            continue
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not writable into a header
            continue
        prefix = _name_prefix(name)
        base = f"{name}=; Max-Age=0; Expires={DELETION_EXPIRES}; Path=/"
        tail = "; Secure" if secure or prefix is not CookiePrefix.NONE else ""
        lines.append(base + tail)
        if prefix is not CookiePrefix.HOST:
            if domains is None:
                domains = _cookie_domains(host)
            lines.extend(f"{base}; Domain={domain}{tail}" for domain in domains)
        if len(lines) >= cap:
            return lines[:cap]
    return lines


LOW_ENTROPY_CLIENT_HINTS: Final = frozenset({"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "save-data"})
"""The low-entropy hint table of the Client Hints infrastructure spec: hints a browser
sends by default anyway. These are the only hints `filter_accept_ch` keeps."""

HIGH_ENTROPY_CLIENT_HINTS: Final = (
    # UA-CH high-entropy values
    "Sec-CH-UA-Full-Version",
    "Sec-CH-UA-Full-Version-List",
    "Sec-CH-UA-Platform-Version",
    "Sec-CH-UA-Arch",
    "Sec-CH-UA-Bitness",
    "Sec-CH-UA-Model",
    "Sec-CH-UA-WoW64",
    "Sec-CH-UA-Form-Factors",
    # device hints (and their legacy unprefixed names)
    "Sec-CH-Device-Memory",
    "Device-Memory",
    "Sec-CH-DPR",
    "DPR",
    "Sec-CH-Width",
    "Width",
    "Sec-CH-Viewport-Width",
    "Viewport-Width",
    "Sec-CH-Viewport-Height",
    # network hints
    "RTT",
    "Downlink",
    "ECT",
    # user-preference media features
    "Sec-CH-Prefers-Color-Scheme",
    "Sec-CH-Prefers-Reduced-Motion",
    "Sec-CH-Prefers-Reduced-Transparency",
)
"""Hints `filter_accept_ch` removes, for documentation and tests. It removes every hint
not in `LOW_ENTROPY_CLIENT_HINTS`, so hints invented later are removed too."""


def filter_accept_ch(value: str) -> str | None:
    """Remove every client hint but the low-entropy ones from an `Accept-CH` or
    `Critical-CH` value (a comma-separated list of header names, case-insensitive).

    Apply the same function to both headers, so a `Critical-CH` never demands a hint
    that `Accept-CH` no longer asks for (no retry loop). Kept members keep their
    spelling and are joined with `", "`; the value is returned as the same object if
    nothing was removed, and None if nothing is left.
    """
    members = [member.strip(_WSP) for member in value.split(",")]
    kept = [m for m in members if m and m.partition(";")[0].rstrip(_WSP).lower() in LOW_ENTROPY_CLIENT_HINTS]
    if not kept:
        return None
    if len(kept) == len(members):
        return value
    return ", ".join(kept)
