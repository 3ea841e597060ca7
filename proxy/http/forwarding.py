"""The upstream side: a ClientSession built for a proxy, and request header hygiene.

aiohttp's client defaults suit a browser, not a proxy (a shared cookie jar, redirects
followed, bodies decompressed, headers added). `make_session` turns all of that off.
`forward_headers` builds the header set the upstream sees from the client's, and
`response_headers` the set the client sees from the upstream's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy, istr

from ..core.addresses import IPNetwork
from ..core.config import Config
from ._aiohttp import SERVER_SOFTWARE

HOP_BY_HOP: Final = frozenset(
    istr(h)
    for h in (
        hdrs.CONNECTION,
        "Keep-Alive",
        "Proxy-Connection",
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.PROXY_AUTHENTICATE,
        "HTTP2-Settings",
    )
)
"""Headers that describe one connection, never forwarded in either direction (RFC 9110 §7.6.1)."""

FORWARDING_HEADERS: Final = (
    hdrs.X_FORWARDED_FOR,
    hdrs.X_FORWARDED_PROTO,
    hdrs.X_FORWARDED_HOST,
    "X-Forwarded-Port",
    hdrs.FORWARDED,
    "X-Real-IP",
)

REQUEST_DROPPED: Final = HOP_BY_HOP | {
    istr(h) for h in (hdrs.HOST, hdrs.CONTENT_LENGTH, hdrs.EXPECT, *FORWARDING_HEADERS)
}
"""Request headers tag-gate always sets itself (or never forwards) rather than copying."""

UNNOMINABLE: Final = frozenset(
    istr(h)
    for h in (
        hdrs.HOST,
        hdrs.COOKIE,
        hdrs.CONTENT_LENGTH,
        hdrs.TRANSFER_ENCODING,
        hdrs.X_FORWARDED_FOR,
        hdrs.X_FORWARDED_PROTO,
        hdrs.X_FORWARDED_HOST,
        hdrs.FORWARDED,
        "Sec-GPC",
    )
)
"""Headers a client may not strip by naming them in `Connection`: doing so could hide the
consent signal or confuse framing and forwarding (the request is refused instead)."""

AUTO_HEADERS: Final = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)
"""Headers aiohttp's client would invent; the upstream must see only what the client sent."""


class BadForwardRequest(Exception):
    """The client request cannot be forwarded as it stands; `status` says how to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ForwardFacts:
    """What the header stage learned about the client request, for later stages."""

    scheme: str
    """`https` only when a trusted proxy said so; drives `Secure` on expiring cookies."""
    host: str | None
    """The client's Host header (the site's name as the visitor sees it)."""


def make_session(config: Config) -> aiohttp.ClientSession:
    """A ClientSession for forwarding: no jar, no decompression, no invented headers.

    Timeouts: connect and per-read idle only. A total would cut long downloads.
    The pool idle timeout should stay below the upstream's own keep-alive timeout so
    tag-gate never reuses a connection the upstream is about to close.
    """
    t, lim = config.timeouts, config.limits
    connector = aiohttp.TCPConnector(
        limit=lim.upstream_pool_size,
        limit_per_host=0,
        keepalive_timeout=t.upstream_idle,
        ttl_dns_cache=10,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=t.connect, sock_read=t.read),
        max_line_size=lim.upstream_max_header_size,
        max_field_size=lim.upstream_max_header_size,
        max_headers=lim.upstream_max_headers,
        read_bufsize=2**16,
        trust_env=False,
    )


def connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[istr]:
    """Header names nominated in any `Connection` header (lower-cased, trimmed)."""
    tokens: set[istr] = set()
    if hdrs.CONNECTION not in headers:
        return tokens
    for value in headers.getall(hdrs.CONNECTION, ()):
        for token in value.split(","):
            token = token.strip()
            if token:
                tokens.add(istr(token))
    return tokens


@lru_cache(maxsize=4096)
def _peer_is_trusted(peer: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(peer.partition("%")[0])
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def _forwarded_node(peer: str) -> str:
    # RFC 7239 §6: IPv6 addresses are bracketed and the whole value quoted.
    return f'"[{peer}]"' if ":" in peer else peer


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _quoted(value: str) -> str:
    """An RFC 7239 value: a token as is, anything else quoted (a host with a port is)."""
    if _TOKEN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def forward_headers(
    incoming: CIMultiDictProxy[str],
    *,
    peer: str | None,
    config: Config,
    upstream_authority: str,
) -> tuple[CIMultiDict[str], ForwardFacts]:
    """The headers to send upstream, and facts about the request.

    Removes hop-by-hop headers and every header named in `Connection`; refuses
    nominations of headers that carry framing, forwarding or consent. Host is the
    client's (default) or the upstream's. X-Forwarded-* and Forwarded are rebuilt from
    the real peer; incoming values are extended only when the peer is a trusted proxy.
    Header names with `_` are dropped, refused or kept per `server.headers_with_underscores`.
    """
    server = config.server
    nominated = connection_tokens(incoming)
    if nominated & UNNOMINABLE:
        bad = ", ".join(sorted(str(h) for h in nominated & UNNOMINABLE))
        raise BadForwardRequest(400, f"Connection may not nominate {bad}")

    trusted = peer is not None and bool(server.trusted_proxies) and _peer_is_trusted(peer, server.trusted_proxies)
    out: CIMultiDict[str] = CIMultiDict()
    underscores = server.headers_with_underscores
    for name, value in incoming.items():
        if name in REQUEST_DROPPED or name in nominated:
            continue
        if "_" in name and underscores != "allow":
            if underscores == "reject":
                raise BadForwardRequest(400, f"header names with underscores are refused ({name})")
            continue
        out.add(name, value)

    client_host = incoming.get(hdrs.HOST)
    out[hdrs.HOST] = client_host if (server.preserve_host and client_host) else upstream_authority

    proto = "http"
    node = peer or "unknown"
    if trusted:
        prior_xff = ", ".join(incoming.getall(hdrs.X_FORWARDED_FOR, ()))
        out[hdrs.X_FORWARDED_FOR] = f"{prior_xff}, {node}" if prior_xff else node
        proto = incoming.get(hdrs.X_FORWARDED_PROTO, "http").split(",")[0].strip().lower() or "http"
        for name in (hdrs.X_FORWARDED_PROTO, hdrs.X_FORWARDED_HOST, "X-Forwarded-Port", "X-Real-IP"):
            for value in incoming.getall(name, ()):
                out.add(name, value)
        if hdrs.X_FORWARDED_PROTO not in out:
            out[hdrs.X_FORWARDED_PROTO] = proto
        prior_fwd = ", ".join(incoming.getall(hdrs.FORWARDED, ()))
    else:
        out[hdrs.X_FORWARDED_FOR] = node
        out[hdrs.X_FORWARDED_PROTO] = proto
        prior_fwd = ""
    if client_host and hdrs.X_FORWARDED_HOST not in out:
        out[hdrs.X_FORWARDED_HOST] = client_host
    element = f"for={_forwarded_node(node)};proto={proto}"
    if client_host:
        element += f";host={_quoted(client_host)}"
    out[hdrs.FORWARDED] = f"{prior_fwd}, {element}" if prior_fwd else element
    if proto not in ("http", "https"):
        proto = "http"
    return out, ForwardFacts(scheme=proto, host=client_host)


RESPONSE_DROPPED: Final = HOP_BY_HOP | {istr(hdrs.CONTENT_LENGTH)}


class _Absent(str):
    """The type of `ABSENT_CONTENT_TYPE` (an object of its own, told apart by identity)."""

    __slots__ = ()


ABSENT_CONTENT_TYPE: Final = _Absent("")
"""Stands in a response's headers for a `Content-Type` the upstream did not send:
aiohttp would add `application/octet-stream`, which makes the browser download a body
it would have sniffed (an HTML page, an image) instead. It reads as an empty value
(no type), anything may replace it, and `serialize_head` leaves it out."""


def response_headers(incoming: CIMultiDictProxy[str], into: CIMultiDict[str]) -> CIMultiDict[str]:
    """Copy the upstream's response headers into `into` (the response's own headers, so
    nothing is copied twice), minus hop-by-hop ones, nominated ones and Content-Length
    (the caller decides framing). Repeated headers such as `Set-Cookie` stay separate
    lines, in order."""
    dropped = RESPONSE_DROPPED
    if hdrs.CONNECTION in incoming:
        dropped = dropped | connection_tokens(incoming)
    add = into.add
    for name, value in incoming.items():
        if name not in dropped:
            add(name, value)
    if hdrs.CONTENT_TYPE not in into:
        into[hdrs.CONTENT_TYPE] = ABSENT_CONTENT_TYPE
    return into


_FORBIDDEN_IN_HEADER: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def serialize_head(status_line: str, headers: CIMultiDict[str], *, fallback: Callable[..., bytes]) -> bytes:
    """aiohttp's response-head serializer, except that bytes the upstream sent outside
    UTF-8 go out unchanged.

    RFC 9110 §5.5 allows obs-text (0x80-0xFF) in field values, and legacy servers use it
    (a Latin-1 `Content-Disposition` filename, a cookie value). aiohttp's parser keeps
    such bytes as surrogates (surrogateescape), but its C serializer silently drops
    surrogates, so `filename="caf\\xe9.txt"` reached the client as `filename="caf.txt"`.
    Heads that are valid UTF-8 throughout (nearly all) take aiohttp's own path; the
    rest are encoded back with surrogateescape, refusing control characters exactly as
    aiohttp does (no response splitting).

    A `Server` header aiohttp added itself (`Python/3.x aiohttp/3.y`, when the upstream
    sent none) is left out: tag-gate does not announce what it runs on, and passes on
    the site's own `Server` line, whatever it says, as it came. So is a `Content-Type`
    the upstream did not send (`ABSENT_CONTENT_TYPE`)."""
    if headers.get(hdrs.SERVER) is SERVER_SOFTWARE:  # aiohttp's constant, not a copy
        del headers[hdrs.SERVER]
    if headers.get(hdrs.CONTENT_TYPE) is ABSENT_CONTENT_TYPE:
        del headers[hdrs.CONTENT_TYPE]
    for value in headers.values():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                break
    else:
        return fallback(status_line, headers)
    lines = [status_line]
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    for line in lines:
        if _FORBIDDEN_IN_HEADER.search(line):
            raise ValueError("Forbidden control character detected in headers. Potential header injection attack.")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no parser made (not a raw byte): aiohttp's way
        return fallback(status_line, headers)


def raw_head_serializer(
    fallback: Callable[[str, CIMultiDict[str]], bytes],
) -> Callable[[str, CIMultiDict[str]], bytes]:
    """`serialize_head` bound to aiohttp's own serializer (what `_aiohttp` installs)."""

    def serialize(status_line: str, headers: CIMultiDict[str]) -> bytes:
        return serialize_head(status_line, headers, fallback=fallback)

    return serialize
