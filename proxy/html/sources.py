"""Fetching payloads inside attributes and element text (pure: strings in, values out).

- `parse_data_url`: a `data:` URL as the Fetch standard's data: URL processor reads it
  (media type, body bytes; None where the browser would load nothing), and
  `make_data_url` for the gated body in the same media type;
- `data_kind`: what a `data:` document in an `<iframe>`, `<object>` or `<embed>` is to
  the gate (HTML to gate like srcdoc, inert, or unreadable);
- `refresh_url`: the URL of `<meta http-equiv=refresh content=...>` (HTML's "shared
  declarative refresh steps");
- `speculation_urls`: the URLs a `<script type=speculationrules>` names, and whether
  its document rules can reach beyond the page's own paths;
- `import_map_addresses`: where a `<script type=importmap>` writes the URLs of modules.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from typing import Any, Final

__all__ = [
    "DataUrl",
    "data_kind",
    "import_map_addresses",
    "make_data_url",
    "parse_data_url",
    "refresh_url",
    "speculation_urls",
    "url_scheme",
]

_ASCII_WS: Final = "\t\n\f\r "
_C0_AND_SPACE: Final = "".join(chr(i) for i in range(0x21))


class DataUrl:
    """A parsed `data:` URL: `mediatype` as written (without `;base64`), its lower-cased
    essence, and the body bytes."""

    __slots__ = ("body", "essence", "mediatype")

    def __init__(self, mediatype: str, essence: str, body: bytes) -> None:
        self.mediatype = mediatype
        self.essence = essence
        self.body = body


_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_BASE64_ALPHABET: Final = re.compile(rb"[A-Za-z0-9+/]*")
_BASE64_TAIL: Final = re.compile(r";[\t\n\f\r ]*base64[\t\n\f\r ]*$", re.IGNORECASE)


_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def url_scheme(url: str) -> str:
    """The scheme the URL parser reads in `url` (lower-cased; "" for a relative URL): C0
    controls and spaces before it dropped, and tabs and newlines anywhere in it."""
    s = url.lstrip(_C0_AND_SPACE)
    head = s[:40]
    if "\t" in head or "\n" in head or "\r" in head:
        s = s[:200].replace("\t", "").replace("\n", "").replace("\r", "")
    m = _SCHEME.match(s)
    return m.group()[:-1].lower() if m else ""


def is_data_url(url: str) -> bool:
    return url_scheme(url) == "data"


def parse_data_url(url: str) -> DataUrl | None:
    """The data: URL processor (Fetch standard): None when it fails (no document loads)."""
    s = url.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    if s[:5].lower() != "data:":
        return None
    s = s[5:].split("#", 1)[0]
    comma = s.find(",")
    if comma < 0:
        return None
    mediatype = s[:comma].strip(_ASCII_WS)
    body = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), s[comma + 1 :].encode("utf-8", "surrogatepass"))
    tail = _BASE64_TAIL.search(mediatype)
    if tail is not None:
        mediatype = mediatype[: tail.start()]
        # forgiving-base64 decode (Infra standard)
        compact = bytes(b for b in body if b not in b"\t\n\f\r ")
        if len(compact) % 4 == 0:
            compact = compact[:-2] if compact.endswith(b"==") else compact[:-1] if compact.endswith(b"=") else compact
        if len(compact) % 4 == 1 or _BASE64_ALPHABET.fullmatch(compact) is None:
            return None
        try:
            body = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    essence = mediatype.split(";", 1)[0].strip(_ASCII_WS).lower() or "text/plain"
    return DataUrl(mediatype, essence, body)


def make_data_url(mediatype: str, body: bytes) -> str:
    """A data: URL of `body` in `mediatype`, percent-encoded (pure ASCII, no `&`)."""
    return "data:" + urllib.parse.quote(mediatype, safe="/;=+-.") + "," + urllib.parse.quote_from_bytes(body, safe="")


HTML_DOCUMENT: Final = "html"
INERT: Final = "inert"
UNREADABLE: Final = "unreadable"

_INERT_PREFIXES: Final = ("audio/", "video/", "font/")
_INERT_TYPES: Final = frozenset({"text/plain", "application/pdf", "application/json", "text/csv"})


def data_kind(essence: str) -> str:
    """What a data: document of this media type is to the gate: `HTML_DOCUMENT` (gated
    like srcdoc), `INERT` (images other than SVG, media, plain text: they fetch nothing),
    or `UNREADABLE` (SVG, XML, XHTML and anything else tag-gate does not parse: the
    HTML parser is the wrong parser for them, so they are treated like an unreadable
    host)."""
    if essence == "text/html":
        return HTML_DOCUMENT
    if essence in _INERT_TYPES or essence.startswith(_INERT_PREFIXES):
        return INERT
    if essence.startswith("image/") and "svg" not in essence and "xml" not in essence:
        return INERT
    return UNREADABLE


_REFRESH: Final = re.compile(r"[\t\n\f\r ]*[0-9]*(?:\.[0-9.]*)?[\t\n\f\r ]*[;,]?[\t\n\f\r ]*", re.ASCII)
_URL_EQUALS: Final = re.compile(r"[uU][rR][lL][\t\n\f\r ]*=[\t\n\f\r ]*")


def refresh_url(content: str) -> str | None:
    """The URL a refresh `content` navigates to (None: it reloads the page itself)."""
    s = content.lstrip(_ASCII_WS)
    m = _REFRESH.match(s)
    if m is None or (m.end() == 0 and s):
        return None
    rest = s[m.end() :]
    u = _URL_EQUALS.match(rest)
    if u is not None:
        rest = rest[u.end() :]
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        rest = rest[1:] if end < 0 else rest[1:end]
    rest = rest.strip(_ASCII_WS)
    return rest or None


_LIST_KEYS: Final = ("prefetch", "prerender", "prefetch_with_subresources")


def _relative_patterns(value: Any) -> bool:
    patterns = value if isinstance(value, list) else [value]
    for p in patterns:
        if isinstance(p, dict):
            p = p.get("pathname")
            if not isinstance(p, str) or not p.startswith("/"):
                return False
        elif not (isinstance(p, str) and p.startswith("/") and p[1:2] not in ("/", "\\")):
            return False
    return bool(patterns)


def _same_site_only(cond: Any) -> bool:
    """Whether a document rule's `where` can only match the page's own paths."""
    if not isinstance(cond, dict):
        return False
    if "href_matches" in cond:
        return _relative_patterns(cond["href_matches"]) and cond.get("relative_to", "ruleset") in (
            "ruleset",
            "document",
        )
    if "and" in cond and isinstance(cond["and"], list):
        return any(_same_site_only(c) for c in cond["and"])
    if "or" in cond and isinstance(cond["or"], list):
        return bool(cond["or"]) and all(_same_site_only(c) for c in cond["or"])
    return False


def speculation_urls(text: str) -> tuple[list[str], bool] | None:
    """The list rules' URLs of a speculation rules script, and whether every document
    rule can only match the page's own paths; None when the text is not JSON the
    browser would take (it then speculates nothing)."""
    try:
        rules = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(rules, dict):
        return None
    urls: list[str] = []
    contained = True
    for key in _LIST_KEYS:
        entries = rules.get(key)
        if not isinstance(entries, list):
            continue
        for rule in entries:
            if not isinstance(rule, dict):
                continue
            listed = rule.get("urls")
            if isinstance(listed, list):
                urls.extend(u for u in listed if isinstance(u, str))
            if "where" in rule or rule.get("source") == "document":
                contained = contained and _same_site_only(rule.get("where"))
    return urls, contained


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def import_map_addresses(text: str) -> tuple[Any, list[tuple[dict[str, Any], str]]] | None:
    """An import map as the browser parses it (HTML's "parse an import map string"): the
    parsed map, and each place an address is written (the specifier map, the key) whose
    value is a string: `imports`, then every scope of `scopes`. None when the browser
    would take no map from the text (not JSON, not an object, `imports` or `scopes` not
    an object, a scope not an object): nothing is fetched through it then."""
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    maps: list[dict[str, Any]] = []
    imports = parsed.get("imports", {})
    scopes = parsed.get("scopes", {})
    if not isinstance(imports, dict) or not isinstance(scopes, dict):
        return None
    maps.append(imports)
    for scope in scopes.values():
        if not isinstance(scope, dict):
            return None
        maps.append(scope)
    places = [(m, key) for m in maps for key, value in m.items() if isinstance(value, str)]
    return parsed, places
