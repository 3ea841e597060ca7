"""Vendor tables: the `Vendor` value, its validators, and the built-in catalogue's TOML (pure).

A vendor is a third party with one consent category, the hosts it serves from
(suffix match on label boundaries), the cookie names it sets (exact or with `*`
wildcards), substrings that identify its inline snippets, and the service keys
consent managers use for it. The built-in catalogue (`data/vendors/*.toml`) and
operator `[[vendor]]` tables share one shape and one validator (`parse_vendor`);
every problem is reported with its TOML path, all at once (`VendorError`). Reading
the package's files is `proxy.core.catalog_files`'s job, compiling vendors into
lookups `proxy.core.catalog`'s.
"""

from __future__ import annotations

import datetime
import encodings.idna
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .url import LABEL_DOTS, host_of
from .url_entries import parse_path_condition

__all__ = [
    "COOKIE_FORBIDDEN",
    "CatalogMeta",
    "Vendor",
    "VendorError",
    "parse_catalog",
    "parse_cookie_pattern",
    "parse_host",
    "parse_host_path",
    "parse_inline_signature",
    "parse_source",
    "parse_vendor",
    "parse_vendors",
    "slug",
    "toml_type",
]


@dataclass(frozen=True, slots=True)
class Vendor:
    """One third party and everything that identifies it.

    `hosts` are lowercase ASCII (punycode) DNS suffixes; `urls` are such a suffix
    followed by a path prefix and an optional query condition
    (`www.google.com/recaptcha/`, `googletagmanager.com/gtag/js?id=AW-*`; see
    `proxy.core.url_entries`), for the services of a host shared by several (they win
    over `hosts` on that host); `cookies` are exact
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
COOKIE_FORBIDDEN: Final = re.compile(r"[\x00-\x20\x7f;,=\"]")
"""Characters that cannot appear in a cookie name as the catalogue matches it."""
MIN_INLINE_LENGTH: Final = 6
"""Shorter inline signatures would match unrelated scripts."""
MAX_INLINE_LENGTH: Final = 200
MAX_DESCRIPTION_LENGTH: Final = 200
MAX_SOURCE_LENGTH: Final = 500
REASON_PREFIX: Final = "reason:"
"""A `source` that is no URL starts with this and says why the category is what it is."""
_MIN_REASON_LENGTH: Final = 10


def toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for problem messages."""
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
                for label in LABEL_DOTS.split(host)
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
    bad = COOKIE_FORBIDDEN.search(text)
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
    """Validate a catalogue URL entry, `host/path` or `host/path?param=glob`: a host as
    `parse_host` takes it (matching its subdomains too), a path prefix matched
    segment-wise (`/tr` matches `/tr` and `/tr/x`, not `/track`; `/recaptcha/` what is
    under it; `*` any run inside one segment) and an optional query condition (see
    `proxy.core.url_entries`). No scheme or fragment. Returns it with the host normalised."""
    if "://" in text or text.startswith("//"):
        raise ValueError(f"{text!r} has a scheme; write host/path, as in 'www.google.com/recaptcha/'")
    host, _, rest = text.partition("/")
    if "?" in host:  # `host?param=glob`: every path of the host
        host, _, condition = host.partition("?")
        rest = "?" + condition
    try:
        rest = parse_path_condition("/" + rest)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return f"{parse_host(host)}{rest}"


def slug(name: str) -> str:
    """A vendor id from a name: its lowercase letters and digits, runs joined by `-`."""
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
        raise VendorError([f"{path}: expected a table, got {toml_type(table)}"])
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
            problems.append(f"{path}.{key}: expected a string, got {toml_type(value)}")
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
        vendor_id = slug(name)
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
            problems.append(f"{path}.{key}: expected an array of strings, got {toml_type(value)}")
            return ()
        out: list[str] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            where = f"{path}.{key}[{i}]"
            if not isinstance(item, str):
                problems.append(f"{where}: expected a string, got {toml_type(item)}")
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
            problems.append(f"{path}: expected an array of tables, got {toml_type(items)}")
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
        problems.append(f"{path}: expected a table, got {toml_type(table)}")
        return None
    for key in table:
        if key not in ("version", "updated"):
            problems.append(f"{path}: unknown key {key!r} (known: version, updated)")
    version, updated = table.get("version"), table.get("updated")
    if not isinstance(version, str) or not version:
        problems.append(f"{path}.version: expected a non-empty string, got {toml_type(version)}")
        version = None
    # tomllib gives a datetime (a date subclass) for `2026-05-01T00:00:00`: refuse it.
    if not isinstance(updated, datetime.date) or isinstance(updated, datetime.datetime):
        problems.append(f"{path}.updated: expected a date, got {toml_type(updated)}")
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
