"""Network addresses in the config: listen addresses, the upstream URL, trusted
networks and forwarded methods (pure parsers raising ValueError/TypeError)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from .reader import as_str, type_name

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_METHODS: Final[tuple[str, ...]] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
"""Methods forwarded unless `server.methods` says otherwise; TRACE and CONNECT never are."""

NEVER_FORWARDED_METHODS: Final = frozenset({"CONNECT", "TRACE"})
"""CONNECT would make tag-gate a tunnel; TRACE reflects headers (cookies) back."""

_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Address:
    """A listen address: host (IPv6 without brackets) and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Upstream:
    """The one origin tag-gate forwards to. Only http is supported."""

    url: str
    """Base URL without a trailing slash, e.g. `http://127.0.0.1:8000`."""
    host: str
    port: int
    authority: str
    """`host[:port]` as sent in `Host` when `preserve_host` is off (default port omitted)."""


def parse_address(value: Any) -> Address:
    """`HOST:PORT`, `[IPv6]:PORT`, or `:PORT` (all interfaces)."""
    text = as_str(value).strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"cannot read {text!r} as an address: expected [IPv6]:PORT")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"cannot read {text!r} as an address: expected HOST:PORT, e.g. 0.0.0.0:8080")
        if ":" in host:
            raise ValueError(f"cannot read {text!r} as an address: write IPv6 hosts as [addr]:PORT")
        host = host or "0.0.0.0"
        if not re.fullmatch(r"[A-Za-z0-9.\-]+", host):
            raise ValueError(f"{host!r} is not a host name or IPv4 address")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return Address(host, int(port))


def parse_address_or_off(value: Any) -> Address | None:
    if value in ("", "off"):
        return None
    return parse_address(value)


def parse_upstream(value: Any) -> Upstream:
    """An `http://host[:port]` URL; a path, query, userinfo or other scheme is an error."""
    text = as_str(value).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r} as a URL: {exc}") from None
    if parts.scheme != "http":
        raise ValueError(f"{text!r}: only http:// upstreams are supported (tag-gate sits beside the site)")
    if not parts.hostname:
        raise ValueError(f"{text!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r}: credentials in the upstream URL are not supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r}: the upstream URL must not have a path, query or fragment")
    host = parts.hostname
    bracketed = f"[{host}]" if ":" in host else host
    port = port or 80
    authority = bracketed if port == 80 else f"{bracketed}:{port}"
    return Upstream(url=f"http://{bracketed}:{port}", host=host, port=port, authority=authority)


def parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array of addresses or CIDR ranges, got {type_name(value)}")
    networks: list[IPNetwork] = []
    bad: list[str] = []
    for i, item in enumerate(value):
        try:
            networks.append(ipaddress.ip_network(as_str(item).strip(), strict=False))
        except (ValueError, TypeError) as exc:
            bad.append(f"[{i}] {exc}")
    if bad:
        raise ValueError("; ".join(bad))
    return tuple(networks)


def parse_methods(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise TypeError("expected a non-empty array of method names")
    methods: set[str] = set()
    for i, item in enumerate(value):
        name = as_str(item)
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"[{i}] {name!r} is not an HTTP method token")
        if name in NEVER_FORWARDED_METHODS:
            raise ValueError(f"[{i}] {name} is never forwarded (it would make tag-gate a tunnel or leak headers)")
        methods.add(name)
    return frozenset(methods)


MAX_WORKERS: Final = 1024
"""More worker processes than this is a typo, not a machine."""


def parse_workers(value: Any) -> int | Literal["auto"]:
    """`server.workers`: a whole number from 1 to `MAX_WORKERS`, or `"auto"`."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'expected a whole number of worker processes or "auto", got {type_name(value)}')
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"expected from 1 to {MAX_WORKERS} worker processes, got {value}")
    return value


def parse_workers_text(value: Any) -> int | Literal["auto"]:
    """`--workers` or `TAG_GATE_WORKERS`: the same as `parse_workers`, from text."""
    text = as_str(value).strip()
    return parse_workers(int(text) if text.isdigit() else text)
