"""URLs as a browser reads them: the host a URL contacts, and its path (pure, stdlib only).

`host_of` is the one answer to "which host does this src/href contact?" for the
catalogue, the policy and the gate; `url_path` the path that rules and catalogue URL
prefixes match against, with `.`/`..` resolved as the browser does before requesting;
`path_under` the segment-wise prefix test. Nothing here raises: a URL the browser would
not load has no host (None).
"""

from __future__ import annotations

import encodings.idna
import ipaddress
import re
from typing import Final

__all__ = [
    "LABEL_DOTS",
    "host_of",
    "path_rewritten",
    "parse_query",
    "path_under",
    "query_values",
    "url_path",
    "url_query",
]

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
LABEL_DOTS: Final = re.compile("[.\u3002\uff0e\uff61]")
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
            for label in LABEL_DOTS.split(text):
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
    stripped = host.rstrip(".")
    if stripped and host.endswith(".."):
        # Several trailing dots: a name no resolver takes. It is read as what is left is
        # read (`0..` as `0`, an IPv4 address), so that what comes out reads the same again.
        return _finish_ascii_host(stripped)
    return stripped or None


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


_DOT_SEGMENT: Final = re.compile(r"/(?:\.|%2[eE]){1,2}(?=/|$)")
# `scheme://authority` or `//authority`, then the path up to the query or fragment.
_ABSOLUTE_PATH: Final = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*([^?#]*)")


def url_path(url: str) -> str:
    """The path of a relative or absolute URL, without query or fragment (a backslash
    counts as a slash, as browsers read http(s) URLs; tabs and newlines are removed; the
    authority ends at the first `/`, `?` or `#`, so `https://host?next=/x` has the path
    `/`). In a path starting with `/`, `.` and `..` segments (also as `%2e`) are resolved
    as the browser resolves them before requesting, so `/x/../tr` is `/tr`."""
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.translate(_TAB_NEWLINE)
    if "\\" in url:
        url = url.replace("\\", "/")
    m = _ABSOLUTE_PATH.match(url)
    path = (m.group(1) if m is not None else url.partition("?")[0].partition("#")[0]) or "/"
    # Every dot segment starts `/.` or `/%2`: two substring tests spare most paths the regex.
    if path[0] == "/" and ("/." in path or "/%2" in path) and _DOT_SEGMENT.search(path):
        return _resolve_dot_segments(path)
    return path


def path_rewritten(url: str) -> bool:
    """Whether the browser may request another path than `url` shows: it has a
    backslash, a tab or newline, or something that may be a dot segment (`/.`, `/%2`).
    False guarantees that `url_path` is the path as written."""
    return "/." in url or "/%2" in url or "\\" in url or "\t" in url or "\n" in url or "\r" in url


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


def path_under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or inside it, segment-wise."""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def url_query(url: str) -> str:
    """The query of a URL as the browser sends it: what follows the first `?` up to the
    fragment, without the `?` ("" when there is none). Tabs and newlines are removed
    first, as the URL parser removes them anywhere."""
    q = url.find("?")
    if q < 0:
        return ""
    h = url.find("#")
    if 0 <= h < q:
        return ""
    query = url[q + 1 :] if h < 0 else url[q + 1 : h]
    if "\t" in query or "\n" in query or "\r" in query:
        query = query.translate(_TAB_NEWLINE)
    return query


def parse_query(query: str) -> dict[str, list[str]]:
    """The parameters of `query` (as `url_query` gives it), each name with its values in
    order, decoded as the browser's `URLSearchParams` decodes them
    (application/x-www-form-urlencoded: `&` separates pairs, the first `=` splits name
    from value, `+` is a space, percent-escapes are UTF-8 bytes and invalid sequences
    become U+FFFD). Names are case-sensitive. Never raises."""
    params: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = _form_decode(key)
        if "%" in value or "+" in value:
            value = _form_decode(value)
        values = params.get(key)
        if values is None:
            params[key] = [value]
        else:
            values.append(value)
    return params


def query_values(query: str, name: str) -> list[str]:
    """Every value of the parameter `name` in `query`, in order (`parse_query`)."""
    return parse_query(query).get(name, [])


def _form_decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), text.encode("utf-8", "surrogatepass"))
    return raw.decode("utf-8", "replace")
