"""The vendor catalogue: which third party a host, cookie or inline script belongs to.

Pure: standard library only. The one piece of IO is reading the package's own
`data/vendors/*.toml`, once, in `load_builtin_catalog`.

A vendor is a third party with one consent category, the hosts it serves from
(suffix match on label boundaries), the cookie names it sets (exact or with `*`
wildcards), substrings that identify its inline snippets, and the service keys
consent managers use for it. The built-in catalogue and operator `[[vendor]]`
tables share one shape and one validator (`parse_vendor`); a `Catalog` compiles
every lookup when it is built, so a lookup per request costs a dict probe or one
regex scan.

Lookups are by host, and by host and path where a host is shared: one host
belongs to one vendor, and where several services share it (`www.google.com`
serves reCAPTCHA, Maps embeds and ad beacons), their well-known paths are listed
as `urls` (`www.google.com/recaptcha/`), which win over the host's own entry; the
rest of such a host is left to the site's own rules.
"""

from __future__ import annotations

import datetime
import encodings.idna
import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final, TypeAlias

from .memo import Memo

__all__ = [
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
    "parse_inline_signature",
    "parse_ocd",
    "parse_source",
    "parse_vendor",
    "parse_vendors",
    "read_catalog",
]


@dataclass(frozen=True, slots=True)
class Vendor:
    """One third party and everything that identifies it.

    `hosts` are lowercase ASCII (punycode) DNS suffixes; `urls` are such a suffix
    followed by a path prefix (`www.google.com/recaptcha/`), for the services of a
    host shared by several (they win over `hosts` on that host); `cookies` are exact
    names or patterns where `*` matches any run of characters (including none);
    `inline` are case-sensitive substrings of inline script text; `services` are
    consent manager service keys, stored casefolded. `source` says where the entry's
    facts come from: an https URL of the vendor's own documentation, or a
    `reason: ...` text where there is none (required for built-in entries, optional
    for operator vendors; empty when not given).
    """

    id: str
    name: str
    category: str
    hosts: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    inline: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    description: str = ""
    urls: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class CatalogMeta:
    """The `[meta]` table of a catalogue file: its version and last update."""

    version: str
    updated: datetime.date


class VendorError(ValueError):
    """One or more problems in vendor tables, each prefixed with its TOML path.

    `problems` holds every problem found (validation never stops at the first), so
    a config loader can merge them into its own report.
    """

    problems: tuple[str, ...]

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


# ---------------------------------------------------------------------------
# host_of: the host of a URL, as a browser on an http(s) page would resolve it
# ---------------------------------------------------------------------------

# The common shape (`https://host/…`, `//host/…`, plain ASCII host, optional port)
# is taken by one anchored regex; anything else goes through the slow path below,
# which follows the WHATWG URL parser for the parts that decide the host. The fast
# path only accepts input on which both paths agree: it stops at the first
# character that is not a plain host character and requires the authority to end
# at `/ \ ? #` or the end of the string.
_FAST: Final = re.compile(r"(?:[hH][tT][tT][pP][sS]?:)?//([A-Za-z0-9_.-]+)(?::([0-9]*))?(?=[/\\?#]|\Z)")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_AUTHORITY_END: Final = re.compile(r"[/\\?#]")
_C0_AND_SPACE: Final = "".join(chr(i) for i in range(0x21))
_TAB_NEWLINE: Final = str.maketrans("", "", "\t\n\r")
# Label separators UTS #46 maps to "." (ideographic and fullwidth full stops).
_DOTS: Final = re.compile("[.\u3002\uff0e\uff61]")
_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
# WHATWG "forbidden domain code points" (ASCII part; the host is ASCII by then).
_FORBIDDEN_DOMAIN: Final = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_HEX: Final = frozenset("0123456789abcdef")
_DIGITS_AND_DOT: Final = frozenset("0123456789.")


def host_of(url: str) -> str | None:
    """Return the host an `http:`/`https:` or protocol-relative URL points at, or None.

    The host is what a browser on an http(s) page would connect to: lowercase,
    IDNA-encoded (punycode), without userinfo (`https://a.com@b.com/` → `b.com`),
    port or trailing dots, with percent-encoded bytes decoded. Leading and trailing
    C0 controls and spaces are stripped and tabs/newlines removed anywhere, as the
    URL parser does; `\\` counts as `/`; any run of slashes after the scheme is
    skipped. IPv4 hosts in any notation the parser accepts (`0x7f.1`) are returned
    dotted-decimal, IPv6 hosts bracketed and compressed.

    None means "no third-party host": a relative URL (first party), a non-http
    scheme (`data:`, `javascript:`, `blob:`, `about:`, `mailto:` …), or a URL the
    browser would refuse to load (bad port, forbidden host character, empty host).

    Not handled: resolution against a `<base href>` (relative URLs are always
    None); `https:host` and `https:/host` are taken as absolute, although a browser
    on a page with the same scheme treats them as paths (so the error is toward
    attributing a first-party path to a host, never the reverse); internationalised
    labels use the IDNA 2003 rules of the standard library rather than UTS #46, so
    a few exotic labels (deviation characters such as `ß`, labels over 63
    characters) come out differently or as None.
    """
    m = _FAST.match(url)
    if m is None:
        return _host_of_slow(url)
    host, port = m.groups()
    if port and not _port_ok(port):
        return None
    host = host.lower()
    # Only a host ending in a number (IPv4 forms) or a dot needs more work; the
    # fast regex already excluded every forbidden character.
    if host[-1] in _DIGITS_AND_DOT or "0x" in host:
        return _finish_ascii_host(host)
    return host


def _host_of_slow(url: str) -> str | None:
    s = url.strip(_C0_AND_SPACE)
    if "\t" in s or "\n" in s or "\r" in s:
        s = s.translate(_TAB_NEWLINE)
    m = _SCHEME.match(s)
    if m is not None:
        if m.group(1).lower() not in ("http", "https"):
            return None
        rest = s[m.end() :]
    elif len(s) >= 2 and s[0] in "/\\" and s[1] in "/\\":
        rest = s
    else:
        return None
    # Special schemes skip every slash and backslash before the authority.
    rest = rest.lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority = rest if end is None else rest[: end.start()]
    # The last "@" ends the userinfo: `a@b@c` has host `c`.
    authority = authority[authority.rfind("@") + 1 :]
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            return None
        host_text, after = authority[: close + 1], authority[close + 1 :]
        if after and after[0] != ":":
            return None
        port = after[1:]
    else:
        host_text, _, port = authority.partition(":")
    if port and not (port.isascii() and port.isdigit() and _port_ok(port)):
        return None
    return _parse_url_host(host_text)


def _port_ok(digits: str) -> bool:
    # Leading zeros are allowed (`:0080` is port 80); strip them before int(),
    # which refuses strings of more than 4300 digits.
    significant = digits.lstrip("0")
    return len(significant) <= 5 and (not significant or int(significant) <= 65535)


def _parse_url_host(text: str) -> str | None:
    if not text:
        return None
    if text[0] == "[":
        if text[-1] != "]":
            return None
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        if "%" in text:
            raw = _PERCENT.sub(lambda pm: bytes((int(pm.group(1), 16),)), text.encode("utf-8"))
            text = raw.decode("utf-8")
        if not text.isascii():
            labels = []
            for label in _DOTS.split(text):
                labels.append(label if label.isascii() else encodings.idna.ToASCII(label).decode("ascii"))
            text = ".".join(labels)
    except (UnicodeError, ValueError):
        return None
    return _finish_ascii_host(text.lower())


def _finish_ascii_host(host: str) -> str | None:
    """Check a lowercase ASCII host; parse it as IPv4 if it ends in a number."""
    if _FORBIDDEN_DOMAIN.search(host):
        return None
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1]
    if last and (last.isdigit() or (last[:2] == "0x" and _HEX.issuperset(last[2:]))):
        return _ipv4(labels)
    return host.rstrip(".") or None


def _ipv4(parts: list[str]) -> str | None:
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if not part:
            return None
        if part[:2] == "0x":
            digits, radix = part[2:], 16
        elif len(part) > 1 and part[0] == "0":
            digits, radix = part[1:], 8
        else:
            digits, radix = part, 10
        try:
            numbers.append(int(digits, radix) if digits else 0)
        except ValueError:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    address = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        address += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(address))


# ---------------------------------------------------------------------------
# Validation of vendor tables (shared with operator config)
# ---------------------------------------------------------------------------

_KEYS: Final = (
    "id",
    "name",
    "category",
    "hosts",
    "urls",
    "cookies",
    "inline",
    "services",
    "description",
    "source",
)
_ID: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_HOST_CHAR: Final = re.compile(r"[^a-z0-9_.-]")
_REGEX_CHARS: Final = frozenset("?[]{}()|^$+\\")
_COOKIE_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f;,=\"]")
MIN_INLINE_LENGTH: Final = 6
"""Shorter inline signatures would match unrelated scripts."""
MAX_INLINE_LENGTH: Final = 200
MAX_DESCRIPTION_LENGTH: Final = 200
MAX_SOURCE_LENGTH: Final = 500
REASON_PREFIX: Final = "reason:"
"""A `source` that is no URL starts with this and says why the category is what it is."""
_MIN_REASON_LENGTH: Final = 10


def _toml_type(value: object) -> str:
    names = {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
        datetime.datetime: "datetime",
        datetime.date: "date",
        datetime.time: "time",
    }
    return names.get(type(value), type(value).__name__)


def parse_host(text: str) -> str:
    """Validate a catalogue host and return it lowercase and IDNA-encoded.

    A catalogue host is a DNS name that matches itself and every subdomain, so it
    has no scheme, path, port, userinfo, wildcard, leading or trailing dot, and at
    least two labels (a lone `com` would match every host under it). Raises
    ValueError naming exactly what is wrong, with a corrected form where there is one.
    """
    if not text:
        raise ValueError("empty host")
    if text != text.strip():
        raise ValueError(f"{text!r} has leading or trailing whitespace")
    if "://" in text or text.startswith("//"):
        raise ValueError(f"{text!r} is a URL, not a host name{_suggest(text)}")
    if "/" in text or "\\" in text:
        raise ValueError(f"{text!r} has a path; a catalogue host is only a host name{_suggest(text)}")
    if "@" in text:
        raise ValueError(f"{text!r} has userinfo ('@'); write only the host name{_suggest(text)}")
    if "*" in text:
        bare = text.lstrip("*.")
        raise ValueError(f"{text!r} has a wildcard; hosts already match every subdomain, so write {bare!r}")
    if text.startswith("[") or text.count(":") > 1:
        raise ValueError(f"{text!r} is an IP address; catalogue hosts are domain names")
    if ":" in text:
        raise ValueError(f"{text!r} has a port; ports are not matched, write {text.partition(':')[0]!r}")
    if text.startswith("."):
        raise ValueError(
            f"{text!r} starts with '.'; hosts already match every subdomain, so write {text.lstrip('.')!r}"
        )
    if text.endswith("."):
        raise ValueError(f"{text!r} ends with '.'; write {text.rstrip('.')!r}")
    host = text.lower()
    if not host.isascii():
        try:
            host = ".".join(
                label if label.isascii() else encodings.idna.ToASCII(label).decode("ascii")
                for label in _DOTS.split(host)
            )
        except UnicodeError as exc:
            raise ValueError(f"{text!r} is not a valid internationalised domain name ({exc})") from None
    bad = _HOST_CHAR.search(host)
    if bad is not None:
        raise ValueError(f"{text!r} has {bad.group()!r}, which is not allowed in a host name")
    labels = host.split(".")
    if "" in labels:
        raise ValueError(f"{text!r} has an empty label ('..')")
    if len(labels) < 2:
        raise ValueError(f"{text!r} is a single label; it would match every host under it")
    if len(host) > 253:
        raise ValueError(f"{text!r} is longer than 253 characters")
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"{text!r} has a label longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{text!r} has a label that starts or ends with '-': {label!r}")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is an IP address; catalogue hosts are domain names")
    return host


def _suggest(text: str) -> str:
    candidate = host_of(text if "//" in text else "//" + text)
    if candidate is None:
        return ""
    try:
        parse_host(candidate)
    except ValueError:
        return ""
    return f", write {candidate!r}"


def parse_cookie_pattern(text: str) -> str:
    """Validate a cookie name or pattern and return it unchanged.

    `*` is the only wildcard and matches any run of characters, including none.
    Names are case-sensitive. A pattern must contain something besides `*`.
    Raises ValueError naming the offending character.
    """
    if not text:
        raise ValueError("empty cookie name")
    for ch in text:
        if ch in _REGEX_CHARS:
            raise ValueError(f"{text!r} has {ch!r}; only '*' is a wildcard in cookie patterns")
    bad = _COOKIE_FORBIDDEN.search(text)
    if bad is not None:
        raise ValueError(f"{text!r} has {bad.group()!r}, which cannot appear in a cookie name")
    if not text.strip("*"):
        raise ValueError(f"{text!r} would match every cookie")
    return text


def parse_inline_signature(text: str) -> str:
    """Validate an inline-script signature (a case-sensitive substring) and return it.

    It must be between MIN_INLINE_LENGTH and MAX_INLINE_LENGTH characters: shorter
    ones match unrelated scripts. Raises ValueError.
    """
    if len(text) < MIN_INLINE_LENGTH:
        raise ValueError(
            f"{text!r} is too short (at least {MIN_INLINE_LENGTH} characters); it would match unrelated scripts"
        )
    if len(text) > MAX_INLINE_LENGTH:
        raise ValueError(f"inline signature longer than {MAX_INLINE_LENGTH} characters")
    if text != text.strip():
        raise ValueError(f"{text!r} has leading or trailing whitespace")
    return text


def parse_source(text: str) -> str:
    """Validate a vendor's `source` and return it unchanged.

    A source is either an `https://` URL (the vendor's own documentation of its
    cookies, hosts or snippet) or a text starting with `reason:` that says why the
    entry's category is what it is, where the vendor documents nothing usable. At
    most MAX_SOURCE_LENGTH characters. Raises ValueError naming what is wrong.
    """
    if not text.strip():
        raise ValueError("empty source; give an https URL of the vendor's documentation or 'reason: ...'")
    if text != text.strip():
        raise ValueError(f"{text!r} has leading or trailing whitespace")
    if len(text) > MAX_SOURCE_LENGTH:
        raise ValueError(f"source longer than {MAX_SOURCE_LENGTH} characters")
    if text.startswith(REASON_PREFIX):
        if len(text[len(REASON_PREFIX) :].strip()) < _MIN_REASON_LENGTH:
            raise ValueError(f"{text!r}: say the reason after 'reason:' (at least {_MIN_REASON_LENGTH} characters)")
        return text
    if text.lower().startswith("http://"):
        raise ValueError(f"{text!r} is not https; cite the https address")
    if not text.startswith("https://"):
        raise ValueError(
            f"{text!r} is neither an https URL of the vendor's documentation nor a text starting with 'reason:'"
        )
    if any(c.isspace() for c in text) or not text.isprintable():
        raise ValueError(f"{text!r}: a URL has no whitespace or control characters")
    host = host_of(text)
    if host is None or "." not in host or host.startswith("["):
        raise ValueError(f"{text!r} has no valid host")
    return text


def parse_host_path(text: str) -> str:
    """Validate a catalogue URL prefix, `host/path`: a host as `parse_host` takes it
    (matching its subdomains too) and a path prefix that matches whole segments
    (`/tr` matches `/tr` and `/tr/x`, not `/track`; `/recaptcha/` matches what is
    under it). No scheme, query or fragment. Returns it with the host normalised."""
    if "://" in text or text.startswith("//"):
        raise ValueError(f"{text!r} has a scheme; write host/path, as in 'www.google.com/recaptcha/'")
    host, slash, path = text.partition("/")
    if not slash or not path:
        raise ValueError(f"{text!r} has no path; a host alone goes in 'hosts'")
    if any(c in path for c in "?#\\") or not path.isprintable() or " " in path:
        raise ValueError(f"{text!r}: the path may not hold a query, fragment, backslash or whitespace")
    if "//" in "/" + path:
        raise ValueError(f"{text!r}: empty path segment ('//')")
    return f"{parse_host(host)}/{path}"


_DOT_SEGMENT: Final = re.compile(r"/(?:\.|%2[eE]){1,2}(?=/|$)")


def url_path(url: str) -> str:
    """The path of a relative or absolute URL, without query or fragment (a backslash
    counts as a slash, as browsers read http(s) URLs). In a path starting with `/`,
    `.` and `..` segments (also as `%2e`) are resolved as the browser resolves them before
    requesting, so `/x/../tr` is `/tr`."""
    if "\\" in url:
        url = url.replace("\\", "/")
    start = 0
    if url.startswith("//") or "://" in url[:12]:
        after = url.find("//") + 2
        slash = url.find("/", after)
        if slash < 0:
            return "/"
        start = slash
    end = len(url)
    for stop in "?#":
        j = url.find(stop, start)
        if 0 <= j < end:
            end = j
    path = url[start:end] or "/"
    if path[0] == "/" and _DOT_SEGMENT.search(path):
        return _resolve_dot_segments(path)
    return path


def _resolve_dot_segments(path: str) -> str:
    """WHATWG path parsing of `.`/`..` segments for a path that starts with `/`."""
    out: list[str] = []
    segments = path[1:].split("/")
    for i, segment in enumerate(segments):
        low = segment.lower()
        last = i == len(segments) - 1
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if out:
                out.pop()
            if last:
                out.append("")
        elif low in (".", "%2e"):
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or inside it, segment-wise."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def _slug(name: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", name.lower()))


def parse_vendor(table: object, path: str, categories: Collection[str], *, require_source: bool = False) -> Vendor:
    """Validate one `[[vendor]]` table and return the Vendor.

    `path` prefixes every problem (`vendor[3]` gives `vendor[3].hosts[0]: …`);
    `categories` are the known category names. Keys: `name` and `category` are
    required; `id` defaults to a slug of the name; `hosts`, `urls`, `cookies`, `inline`,
    `services` are arrays of strings (at least one host, cookie or inline
    signature or URL overall); `description` is one short sentence; `source` is
    checked by `parse_source` and required only with `require_source` (the
    built-in catalogue; operators know their own sites, so their vendors may omit
    it). Unknown keys are errors. Raises VendorError listing every problem at once.
    """
    if not isinstance(table, Mapping):
        raise VendorError([f"{path}: expected a table, got {_toml_type(table)}"])
    problems: list[str] = []
    for key in table:
        if key not in _KEYS:
            problems.append(f"{path}: unknown key {key!r} (known: {', '.join(_KEYS)})")

    def text(key: str, *, required: bool) -> str:
        value = table.get(key)
        if value is None:
            if required:
                problems.append(f"{path}: missing required key {key!r}")
            return ""
        if not isinstance(value, str):
            problems.append(f"{path}.{key}: expected a string, got {_toml_type(value)}")
            return ""
        return value

    name = text("name", required=True)
    if "name" in table and isinstance(table["name"], str) and not name.strip():
        problems.append(f"{path}.name: must not be empty")
    vendor_id = text("id", required=False)
    if "id" in table and isinstance(table["id"], str):
        if not _ID.fullmatch(vendor_id):
            problems.append(f"{path}.id: {vendor_id!r} is not a slug (lowercase letters and digits joined by '-')")
    else:
        vendor_id = _slug(name)
        if name.strip() and not vendor_id:
            problems.append(f"{path}: cannot derive an id from name {name!r}; give 'id'")
    category = text("category", required=True)
    if isinstance(table.get("category"), str) and category not in categories:
        problems.append(f"{path}.category: unknown category {category!r} (known: {', '.join(categories)})")
    description = text("description", required=False)
    if len(description) > MAX_DESCRIPTION_LENGTH:
        problems.append(f"{path}.description: longer than {MAX_DESCRIPTION_LENGTH} characters")
    source = text("source", required=False)
    if "source" not in table and require_source:
        problems.append(
            f"{path}: missing required key 'source' (an https URL of the vendor's documentation, or 'reason: ...')"
        )
    elif isinstance(table.get("source"), str):
        try:
            parse_source(source)
        except ValueError as exc:
            problems.append(f"{path}.source: {exc}")

    def strings(key: str, parse: Callable[[str], str]) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list):
            problems.append(f"{path}.{key}: expected an array of strings, got {_toml_type(value)}")
            return ()
        out: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where = f"{path}.{key}[{i}]"
            if not isinstance(item, str):
                problems.append(f"{where}: expected a string, got {_toml_type(item)}")
                continue
            try:
                parsed = parse(item)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if parsed in seen:
                problems.append(f"{where}: duplicate of {key}[{seen[parsed]}] ({parsed!r})")
                continue
            seen[parsed] = i
            out.append(parsed)
        return tuple(out)

    hosts = strings("hosts", parse_host)
    urls = strings("urls", parse_host_path)
    cookies = strings("cookies", parse_cookie_pattern)
    inline = strings("inline", parse_inline_signature)
    services = strings("services", _parse_service)
    # Judge on what was written, so a table whose only host is invalid gets one
    # problem (the host's), not two.
    if not any(isinstance(table.get(k), list) and table.get(k) for k in ("hosts", "urls", "cookies", "inline")):
        problems.append(f"{path}: needs at least one of 'hosts', 'urls', 'cookies' or 'inline'")
    if problems:
        raise VendorError(problems)
    return Vendor(
        id=vendor_id,
        name=name,
        category=category,
        hosts=hosts,
        cookies=cookies,
        inline=inline,
        services=services,
        description=description,
        urls=urls,
        source=source,
    )


def _parse_service(text: str) -> str:
    key = text.strip().casefold()
    if not key:
        raise ValueError("empty service key")
    return key


class _Ledger:
    """Who owns each id, host, cookie, inline signature and service key so far.

    Shared across every array of one catalogue so uniqueness holds across files,
    not only inside one `[[vendor]]` array.
    """

    __slots__ = ("ids", "owners")

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.owners: dict[tuple[str, str], tuple[str, str]] = {}

    def add(
        self,
        items: object,
        path: str,
        categories: Collection[str],
        problems: list[str],
        *,
        require_source: bool = False,
    ) -> list[Vendor]:
        if not isinstance(items, list):
            problems.append(f"{path}: expected an array of tables, got {_toml_type(items)}")
            return []
        vendors: list[Vendor] = []
        for i, table in enumerate(items):
            where = f"{path}[{i}]"
            try:
                vendor = parse_vendor(table, where, categories, require_source=require_source)
            except VendorError as exc:
                problems.extend(exc.problems)
                continue
            if vendor.id in self.ids:
                problems.append(f"{where}.id: {vendor.id!r} is already used by {self.ids[vendor.id]}")
                continue
            self.ids[vendor.id] = where
            for key in ("hosts", "urls", "cookies", "inline", "services"):
                for j, value in enumerate(getattr(vendor, key)):
                    owner = self.owners.setdefault((key, value), (where, vendor.id))
                    if owner[0] != where:
                        problems.append(f"{where}.{key}[{j}]: {value!r} already belongs to {owner[0]} ({owner[1]!r})")
            vendors.append(vendor)
        return vendors


def parse_vendors(items: object, path: str, categories: Collection[str]) -> tuple[Vendor, ...]:
    """Validate an array of vendor tables (`[[vendor]]`) and return the Vendors in order.

    Besides each table's own checks, ids must be unique in the array, and no host,
    cookie name or pattern, inline signature or service key may belong to two
    vendors of the same array. `path` names the array (`vendor` → `vendor[3].…`).
    Raises VendorError listing every problem.
    """
    problems: list[str] = []
    vendors = _Ledger().add(items, path, categories, problems)
    if problems:
        raise VendorError(problems)
    return tuple(vendors)


def _parse_meta(table: object, path: str, problems: list[str]) -> CatalogMeta | None:
    if not isinstance(table, Mapping):
        problems.append(f"{path}: expected a table, got {_toml_type(table)}")
        return None
    for key in table:
        if key not in ("version", "updated"):
            problems.append(f"{path}: unknown key {key!r} (known: version, updated)")
    version, updated = table.get("version"), table.get("updated")
    if not isinstance(version, str) or not version:
        problems.append(f"{path}.version: expected a non-empty string, got {_toml_type(version)}")
        version = None
    # tomllib gives a datetime (a date subclass) for `2026-05-01T00:00:00`: refuse it.
    if not isinstance(updated, datetime.date) or isinstance(updated, datetime.datetime):
        problems.append(f"{path}.updated: expected a date, got {_toml_type(updated)}")
        updated = None
    if version is None or updated is None:
        return None
    return CatalogMeta(version=version, updated=updated)


def parse_catalog(
    documents: Iterable[tuple[str, Mapping[str, object]]],
    categories: Collection[str],
    *,
    require_source: bool = False,
) -> tuple[CatalogMeta, tuple[Vendor, ...]]:
    """Validate a catalogue split over several TOML documents.

    `documents` are `(name, parsed document)` pairs in reading order; `name`
    prefixes every problem (`vendors/analytics.toml: vendor[3].hosts[0]: …`).
    Exactly one document holds `[meta]` (`version`, a string, and `updated`, a
    TOML date); any document may hold `[[vendor]]` tables and nothing else. The
    vendors are the union in document order, and ids, hosts, cookie names and
    patterns, inline signatures and service keys are unique across all
    documents. With `require_source` (the built-in catalogue) every vendor must
    name its `source`. Raises VendorError listing every problem.
    """
    problems: list[str] = []
    ledger = _Ledger()
    vendors: list[Vendor] = []
    meta: CatalogMeta | None = None
    meta_from: str | None = None
    for name, document in documents:
        for key in document:
            if key not in ("meta", "vendor"):
                problems.append(f"{name}: {key}: unknown key (known: meta, vendor)")
        if "meta" in document:
            if meta_from is not None:
                problems.append(f"{name}: meta: a second [meta] table; the first is in {meta_from}")
            else:
                meta_from = name
                meta = _parse_meta(document["meta"], f"{name}: meta", problems)
        vendors.extend(
            ledger.add(
                document.get("vendor", []), f"{name}: vendor", categories, problems, require_source=require_source
            )
        )
    if meta_from is None:
        problems.append("no [meta] table in any catalogue file")
    if problems or meta is None:
        raise VendorError(problems)
    return meta, tuple(vendors)


def read_catalog(
    folder: Traversable, categories: Collection[str], *, require_source: bool = False
) -> tuple[CatalogMeta, tuple[Vendor, ...]]:
    """Read every `*.toml` file in `folder`, in sorted name order, and validate them
    together with `parse_catalog` (`require_source` is passed on).

    Problems are prefixed `<folder name>/<file name>: `; a file that is not valid
    TOML or UTF-8 is reported with the parser's message, and the other files are
    still checked. Raises VendorError listing every problem.
    """
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".toml") and e.is_file()), key=lambda e: e.name)
    problems: list[str] = []
    documents: list[tuple[str, Mapping[str, object]]] = []
    for entry in entries:
        name = f"{folder.name}/{entry.name}"
        try:
            documents.append((name, tomllib.loads(entry.read_text(encoding="utf-8"))))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: not valid TOML: {exc}")
    try:
        result = parse_catalog(documents, categories, require_source=require_source)
    except VendorError as exc:
        raise VendorError([*problems, *exc.problems]) from None
    if problems:
        raise VendorError(problems)
    return result


@cache
def load_builtin_catalog() -> tuple[CatalogMeta, tuple[Vendor, ...]]:
    """Read and validate the package's `data/vendors/*.toml`, once per process."""
    # Imported here so the validators above stay free of project imports.
    from proxy.core.categories import BUILTIN_CATEGORIES

    return read_catalog(resources.files("proxy") / "data" / "vendors", BUILTIN_CATEGORIES, require_source=True)


def load_builtin_vendors() -> tuple[Vendor, ...]:
    """The built-in vendors, in file order (read once per process)."""
    return load_builtin_catalog()[1]


# ---------------------------------------------------------------------------
# The Open Cookie Database: a second, lower-priority source of cookie names
# ---------------------------------------------------------------------------

OCD_REPOSITORY: Final = "https://github.com/jkwakman/Open-Cookie-Database"
OCD_CATEGORIES: Final = ("Analytics", "Marketing", "Functional", "Necessary", "Security", "Personalization")
"""The categories the Open Cookie Database uses (its own words)."""


def parse_ocd(data: object, categories: Collection[str]) -> tuple[Vendor, ...]:
    """Validate the shipped Open Cookie Database file (written by tools/import_ocd.py)
    and return its names as cookie-only vendors, one per platform and category.

    `data` is the decoded JSON: `meta` (with the source `commit`) and `cookies`, rows
    of `[pattern, platform, ocd_category, category]` where `pattern` is an exact
    name or a `*` pattern and `category` is ours after the import decisions, or
    null for a name left out. Vendor ids are `ocd-<platform>-<category>`. Raises
    ValueError naming the first bad row.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {_toml_type(data)}")
    meta, rows = data.get("meta"), data.get("cookies")
    if not isinstance(meta, dict) or not isinstance(meta.get("commit"), str):
        raise ValueError("meta: expected an object with the source 'commit'")
    if not isinstance(rows, list):
        raise ValueError("cookies: expected an array")
    source = f"{OCD_REPOSITORY}/blob/{meta['commit']}/open-cookie-database.csv"
    grouped: dict[str, tuple[str, str, list[str]]] = {}
    ids: dict[tuple[str, str], str] = {}
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise ValueError(f"cookies[{i}]: expected [pattern, platform, ocd_category, category], got {row!r}")
        pattern, platform, ocd_category, category = row
        if ocd_category not in OCD_CATEGORIES:
            raise ValueError(f"cookies[{i}]: unknown Open Cookie Database category {ocd_category!r}")
        if category is None:
            continue
        if not (isinstance(pattern, str) and isinstance(platform, str)):
            raise ValueError(f"cookies[{i}]: expected [pattern, platform, ocd_category, category], got {row!r}")
        if category not in categories:
            raise ValueError(f"cookies[{i}]: unknown category {category!r}")
        if _ocd_name_is_bad(pattern):
            try:  # for the message; both raise on every name _ocd_name_is_bad refuses
                parse_cookie_pattern(pattern) if "*" in pattern else _parse_ocd_name(pattern)
            except ValueError as exc:
                raise ValueError(f"cookies[{i}]: {exc}") from None
        key = (platform, category)
        vendor_id = ids.get(key)
        if vendor_id is None:
            vendor_id = ids[key] = f"ocd-{_slug(platform) or 'unnamed'}-{category}"
        grouped.setdefault(vendor_id, (platform or "unnamed platform", category, []))[2].append(pattern)
    return tuple(
        Vendor(
            id=vendor_id,
            name=f"{platform} (Open Cookie Database)",
            category=category,
            cookies=tuple(dict.fromkeys(cookies)),
            description=f"Cookies the Open Cookie Database lists for {platform}.",
            source=source,
        )
        for vendor_id, (platform, category, cookies) in grouped.items()
    )


_REGEX_CHAR: Final = re.compile(r"[][?{}()|^$+\\]")


def _ocd_name_is_bad(pattern: str) -> bool:
    """What parse_cookie_pattern refuses in a pattern, or _parse_ocd_name in an exact
    name, in two regex scans instead of a loop per character (2,000 names per load)."""
    if not pattern or _COOKIE_FORBIDDEN.search(pattern) is not None:
        return True
    return "*" in pattern and (_REGEX_CHAR.search(pattern) is not None or not pattern.strip("*"))


def _parse_ocd_name(text: str) -> str:
    # Exact names are looked up as they are, so brackets and the like may stay.
    if not text:
        raise ValueError("empty cookie name")
    bad = _COOKIE_FORBIDDEN.search(text)
    if bad is not None:
        raise ValueError(f"{text!r} has {bad.group()!r}, which cannot appear in a cookie name")
    return text


@cache
def load_ocd_vendors() -> tuple[Vendor, ...]:
    """The package's `data/ocd/open-cookie-database.json` as vendors, once per process.

    Raises VendorError when the shipped file is missing or malformed.
    """
    from proxy.core.categories import BUILTIN_CATEGORIES

    path = resources.files("proxy") / "data" / "ocd" / "open-cookie-database.json"
    try:
        return parse_ocd(json.loads(path.read_text(encoding="utf-8")), BUILTIN_CATEGORIES)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VendorError([f"ocd/open-cookie-database.json: {exc}"]) from None


# ---------------------------------------------------------------------------
# Catalog: compiled lookups
# ---------------------------------------------------------------------------

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

    def match_pattern(self, name: str) -> Vendor | None:
        """The vendor of the most literal pattern matching `name` (exact names aside)."""
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
                    return vendor
        return found


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


_Trie: TypeAlias = dict[str, "_Trie"]


def _trie_regex(words: Iterable[str]) -> str:
    """One regex matching exactly the given literals, longest first at a position.

    A plain alternation of hundreds of literals makes the regex engine try every
    alternative at every position; a trie shares prefixes, so each position costs
    about one character comparison per trie level reached.
    """
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # the empty key marks the end of a word

    def emit(node: _Trie) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # A word ends here: the optional group is greedy, so longer words win.
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


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
        hosts: dict[str, Vendor] = {}
        inline: dict[str, Vendor] = {}
        services: dict[str, Vendor] = {}
        names: dict[str, Vendor] = {}
        paths: dict[str, list[tuple[str, Vendor]]] = {}
        for vendor in self._vendors:
            for host in vendor.hosts:
                hosts[host.lower()] = vendor
            for prefix in vendor.urls:
                host, _, path = prefix.partition("/")
                entries = paths.setdefault(host.lower(), [])
                entries[:] = [(p, v) for p, v in entries if p != "/" + path]  # a later vendor wins
                entries.append(("/" + path, vendor))
            for signature in vendor.inline:
                inline[signature] = vendor
            for service in vendor.services:
                services[service.casefold()] = vendor
            names.setdefault(vendor.id.casefold(), vendor)
            names.setdefault(vendor.name.casefold(), vendor)
        self._hosts = hosts
        # Longest prefix first, so /recaptcha/api2/ would beat /recaptcha/.
        self._paths = {h: tuple(sorted(e, key=lambda pv: -len(pv[0]))) for h, e in paths.items()}
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
        URL prefixes (`urls`) take no part: there is no path.
        """
        return self._lookup(host, None)

    def vendor_for_location(self, host: str, url: str) -> Vendor | None:
        """The vendor serving `url`, whose host is `host` (as `host_of` returns it).

        Like `vendor_for_host`, but at each suffix of the host, from the longest, a
        listed URL prefix whose path the URL's path is under wins over the host entry
        (`www.facebook.com/tr` is the Meta Pixel, the rest of facebook.com is social).
        """
        return self._lookup(host, url if self._paths else None)

    def _lookup(self, host: str, url: str | None) -> Vendor | None:
        host = host.lower().strip(".")
        hosts = self._hosts
        paths = self._paths if url is not None else None
        path: str | None = None
        i = 0
        while True:
            suffix = host[i:] if i else host
            if paths is not None and url is not None:
                entries = paths.get(suffix)
                if entries is not None:
                    if path is None:
                        path = url_path(url)
                    for prefix, owner in entries:
                        if _under(path, prefix):
                            return owner
            vendor = hosts.get(suffix)
            if vendor is not None:
                return vendor
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
        vendor = self._cookies.match_pattern(name)
        fallback = self._cookie_fallback
        if vendor is None and fallback is not None:
            vendor = fallback.exact.get(name) or fallback.match_pattern(name)
        return cache.put(name, vendor, len(name))

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
