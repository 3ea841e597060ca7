"""Non-ASCII URLs as the browser reads them: the page's charset, then UTS #46 (pure, no lol-html).

The gate carries a page through lol-html in a Latin-1 transport form (each input byte
one character), and character references in an attribute decode to real characters,
so a URL the gate reads may mix both. The browser first decodes the page's bytes in its
charset, then parses the URL: its host is percent-decoded, mapped by UTS #46
(non-transitional, without the STD3 rules: `https://www。facebook。com/` is
`www.facebook.com`, a soft hyphen vanishes, `ｃonnect` is `connect`) and punycoded.

`readings` gives the ways a non-ASCII URL may read (the first is the browser's reading
as far as tag-gate knows the charset); `ascii_host_url` rewrites one reading's host to
the ASCII form the browser contacts, so that `proxy.core.url.host_of` (stdlib IDNA 2003,
which differs on a few labels) sees only ASCII hosts. A URL whose host the browser may
parse but tag-gate cannot is `UNPARSEABLE`: the gate treats it as a third party nobody
classified and refuses it on any page where the visitor refused something.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from typing import Final

import idna

__all__ = ["UNPARSEABLE", "ascii_host_url", "python_codec", "readings"]

UNPARSEABLE: Final = "\x00unparseable"
"""`ascii_host_url`'s answer for a special URL whose host does not parse."""

_WINDOWS_1252: Final = frozenset(
    {
        "ansi_x3.4-1968",
        "ascii",
        "cp1252",
        "cp819",
        "csisolatin1",
        "ibm819",
        "iso-8859-1",
        "iso-ir-100",
        "iso8859-1",
        "iso88591",
        "iso_8859-1",
        "iso_8859-1:1987",
        "l1",
        "latin1",
        "us-ascii",
        "windows-1252",
        "x-cp1252",
    }
)
"""Labels the Encoding Standard maps to windows-1252 (Latin-1 and ASCII among them)."""

_CODECS: Final = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
    "windows-31j": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "windows-949": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "chinese": "gb18030",
    "big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "unicode-1-1-utf-8": "utf-8",
    "utf8": "utf-8",
}
"""Labels whose Encoding Standard decoder is a different Python codec than the label names."""

_CP1252_HIGH: Final = {i: bytes((i,)).decode("cp1252", "ignore") or chr(i) for i in range(0x80, 0xA0)}


def python_codec(label: str | None) -> str | None:
    """The Python codec that decodes bytes as the browser does for a charset `label`
    ("windows-1252" for the Latin-1 family); None when the label is unknown here."""
    if not label:
        return None
    label = label.strip().lower()
    if label in _WINDOWS_1252:
        return "windows-1252"
    name = _CODECS.get(label, label)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode(transport: str, codec: str) -> str | None:
    """The transport text's byte runs decoded with `codec` (characters above U+00FF came
    from character references and are kept); None when the bytes do not decode."""
    if codec == "windows-1252":
        return transport.translate(_CP1252_HIGH)
    out: list[str] = []
    run: list[str] = []
    for ch in transport:
        if ch <= "\xff":
            run.append(ch)
            continue
        if run:
            out.append("".join(run))
            run = []
        out.append(ch)
    if run:
        out.append("".join(run))
    try:
        return "".join(p if p[0] > "\xff" else p.encode("latin-1").decode(codec) for p in out)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None


def readings(transport: str, charset: str | None) -> list[str]:
    """How a non-ASCII URL read from the transport may read in the page, most likely
    first: in the page's charset when it is known, else as UTF-8 when the bytes are valid
    UTF-8; then as windows-1252 (also what a character reference below U+0100 means).
    Duplicates are left out."""
    found: list[str] = []
    for codec in (python_codec(charset), "utf-8", "windows-1252"):
        if codec is None:
            continue
        text = _decode(transport, codec)
        if text is not None and text not in found:
            found.append(text)
    return found


_C0_AND_SPACE: Final = "".join(chr(i) for i in range(0x21))
_TAB_NEWLINE: Final = str.maketrans("", "", "\t\n\r")
_SPECIAL: Final = re.compile(r"(?:[hH][tT][tT][pP][sS]?:|(?=[/\\]{2}))[/\\]*")
_AUTHORITY_END: Final = re.compile(r"[/\\?#]")
_PERCENT: Final = re.compile(rb"%([0-9A-Fa-f]{2})")


def _ascii_host(host: str) -> str | None:
    """A URL host mapped as the URL standard's "domain to ASCII" does (UTS #46
    non-transitional, no STD3 rules, no DNS length check); None when it fails."""
    if "%" in host:
        raw = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), host.encode("utf-8"))
        host = raw.decode("utf-8", "replace")
    if host.isascii() and "xn--" not in host.lower():
        return host.lower()
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except (idna.IDNAError, ValueError):
        return None
    labels = []
    for label in mapped.split("."):
        if label.isascii():
            if label.lower().startswith("xn--"):
                try:
                    decoded = label[4:].encode("ascii").decode("punycode")
                except UnicodeError:
                    return None
                if not decoded or decoded.isascii() or unicodedata.category(decoded[0]).startswith("M"):
                    return None
            labels.append(label)
            continue
        if unicodedata.category(label[0]).startswith("M"):
            return None  # a label may not begin with a combining mark
        labels.append("xn--" + label.encode("punycode").decode("ascii"))
    return ".".join(labels).lower()


def ascii_host_url(url: str) -> str:
    """`url` (already in real characters) with the host of an http(s) or network-path
    URL in the ASCII form the browser contacts; `UNPARSEABLE` when such a host does not
    map; any other URL as it is (a relative URL, another scheme, an ASCII host)."""
    s = url.strip(_C0_AND_SPACE)
    if "\t" in s or "\n" in s or "\r" in s:
        s = s.translate(_TAB_NEWLINE)
    m = _SPECIAL.match(s)
    if m is None:
        return url
    start = m.end()
    end_match = _AUTHORITY_END.search(s, start)
    end = len(s) if end_match is None else end_match.start()
    authority = s[start:end]
    host_start = start + authority.rfind("@") + 1
    host_text = s[host_start:end]
    if host_text.startswith("["):
        return url  # an IPv6 literal is ASCII or nothing
    colon = host_text.find(":")
    if colon >= 0:
        host_text = host_text[:colon]
    if host_text.isascii() and "%" not in host_text:
        return s
    host = _ascii_host(host_text)
    if not host:
        return UNPARSEABLE
    return s[:host_start] + host + s[host_start + len(host_text) :]
