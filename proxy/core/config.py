"""TOML config file → one frozen `Config` (pure: no aiohttp, no lol-html, no sockets).

Contract:
- `parse_config(data)` takes the decoded TOML document and returns a `Config`, or raises
  `ConfigError` listing *every* problem found, each prefixed with its TOML path
  (`server.listen: ...`, `vendor[3].hosts[0]: ...`). Unknown keys are errors.
- `load_config(path)` reads and parses a file; `load_config(None)` gives the built-in
  defaults. Overrides from the command line or the environment are applied with
  `with_overrides`, which re-validates them the same way.
- Everything that can be compiled is compiled here, once, so the request path only
  reads finished values.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from .catalog import Catalog, Vendor, VendorError, make_catalog, parse_host, parse_vendor
from .categories import BUILTIN_CATEGORIES, ESSENTIAL
from .consent import DEFAULT_REGISTRY, ConsentSettings, ParseContext, Registry, settings_problems
from .defer import STYLES
from .policy import Action, CookieRule, Policy, UrlRule, compile_globs

T = TypeVar("T")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_METHODS: Final[tuple[str, ...]] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
"""Methods forwarded unless `server.methods` says otherwise; TRACE and CONNECT never are."""

NEVER_FORWARDED_METHODS: Final = frozenset({"CONNECT", "TRACE"})
"""CONNECT would make tag-gate a tunnel; TRACE reflects headers (cookies) back."""

_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SIZE_RE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


class ConfigError(Exception):
    """One or more problems in a config; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: Address = Address("0.0.0.0", 8080)
    upstream: Upstream | None = None
    admin_listen: Address | None = Address("127.0.0.1", 9090)
    preserve_host: bool = True
    trusted_proxies: tuple[IPNetwork, ...] = ()
    mode: Literal["enforce", "report-only"] = "enforce"
    methods: frozenset[str] = frozenset(DEFAULT_METHODS)
    headers_with_underscores: Literal["drop", "reject", "allow"] = "drop"
    access_log: bool = True
    workers: int | Literal["auto"] = 1
    """Worker processes sharing `listen` (SO_REUSEPORT) under a supervisor; 1 runs the
    proxy in the one process, as before. `"auto"`: the CPUs this process may use."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """All in seconds. `read` is the longest silence accepted from the upstream, before or
    during the body; there is deliberately no total timeout (long downloads are fine)."""

    header: float = 10.0
    keepalive: float = 75.0
    connect: float = 5.0
    read: float = 60.0
    upstream_idle: float = 10.0
    upstream_queue: float = 10.0
    client_body: float = 60.0
    grace: float = 25.0
    shutdown_delay: float = 0.0
    websocket_idle: float = 300.0
    """A WebSocket relay with no message (data, ping or pong) in either direction for this
    long is closed on both sides with 1001."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_body: int = 1024**3
    max_request_line: int = 8190
    max_header_size: int = 16384
    max_headers: int = 128
    max_connections: int = 10000
    upstream_max_header_size: int = 16384
    upstream_max_headers: int = 256
    upstream_pool_size: int = 256
    upstream_queue: int = 1024
    websocket_max_message: int = 16 * 1024**2
    """Largest WebSocket message relayed, either way (one frame or the sum of its fragments)."""


DEFER_STYLES: Final = STYLES
"""Conventions `html.defer_style` accepts with the built-in registry (each consent
manager's module in proxy.core.consent writes its own)."""

ELEMENT_ACTIONS: Final = ("remove", "defer", "placeholder")


@dataclass(frozen=True, slots=True)
class HtmlConfig:
    """`[html]`: how refused elements are treated and how bodies are decoded."""

    action: Action = Action.REMOVE
    category_actions: tuple[tuple[str, Action], ...] = ()
    defer_style: str = "tag-gate"
    unknown_hosts: str = "keep"
    first_party_hosts: tuple[str, ...] = ()
    consent_mode: bool = True
    inline_styles: bool = False
    max_inline_script: int = 1 << 20
    max_decoded_size: int = 64 << 20
    max_ratio: float = 100.0
    gzip_level: int = 1
    brotli_quality: int = 4
    zstd_level: int = 3
    decisions_header: bool = False


@dataclass(frozen=True, slots=True)
class CookieConfig:
    """`[cookies]`: the cookie firewall."""

    unknown: str = "keep"
    strip_request: bool = True
    expire_on_withdrawal: bool = True
    withdrawal_on: Literal["navigation", "all"] = "navigation"
    withdrawal_cap: int = 20
    essential: tuple[str, ...] = ()
    client_hints: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    consent: ConsentSettings = field(default_factory=ConsentSettings)
    html: HtmlConfig = field(default_factory=HtmlConfig)
    cookies: CookieConfig = field(default_factory=CookieConfig)
    categories: tuple[tuple[str, str], ...] = ()
    """Operator-defined categories: (name, description)."""
    vendors: tuple[Vendor, ...] = ()
    """Operator `[[vendor]]` entries (added to, or overriding, the built-in catalogue)."""
    rules: tuple[UrlRule, ...] = ()
    cookie_rules: tuple[CookieRule, ...] = ()
    exceptions: tuple[str, ...] = ()
    policy: Policy = field(default_factory=lambda: make_policy(None))
    source: str = "<built-in defaults>"
    """Where the config came from, for logs and `check-config`."""


# --------------------------------------------------------------------------- reading


class _Reader:
    """Walks one TOML table, converting values and collecting problems with their paths.

    Every accessor records the key as known; `finish()` reports the keys nobody asked
    for, so a typo is an error rather than a silently ignored setting.
    """

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self._data = data
        self._path = path
        self._problems = problems
        self._known: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def problem(self, key: str | None, message: str) -> None:
        self._problems.append(f"{self.where(key) if key else self._path}: {message}")

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str) -> Any:
        self._known.add(key)
        return self._data.get(key)

    def get(self, key: str, default: T, convert: Callable[[Any], T]) -> T:
        """The converted value of `key`, or `default` when absent or invalid.

        `convert` raises ValueError (or TypeError) with a message naming what is wrong;
        that message is recorded against the key's path.
        """
        self._known.add(key)
        if key not in self._data:
            return default
        try:
            return convert(self._data[key])
        except (ValueError, TypeError) as exc:
            self.problem(key, str(exc))
            return default

    def table(self, key: str) -> _Reader:
        self._known.add(key)
        value = self._data.get(key, {})
        if not isinstance(value, Mapping):
            self.problem(key, f"expected a table, got {_type_name(value)}")
            value = {}
        return _Reader(value, self.where(key), self._problems)

    def tables(self, key: str) -> Iterator[_Reader]:
        """The entries of an array of tables (`[[key]]`), each with an indexed path."""
        self._known.add(key)
        value = self._data.get(key, [])
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables ([[{key}]]), got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            path = f"{self.where(key)}[{i}]"
            if not isinstance(item, Mapping):
                self._problems.append(f"{path}: expected a table, got {_type_name(item)}")
                continue
            yield _Reader(item, path, self._problems)

    def finish(self) -> None:
        for key in self._data:
            if key not in self._known:
                self.problem(key, "unknown key")


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- converters


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_type_name(value)}")
    return value


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_type_name(value)}")
    return value


def as_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {_type_name(value)}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative number of seconds, got {value}")
    return seconds


def as_positive_seconds(value: Any) -> float:
    seconds = as_seconds(value)
    if seconds == 0:
        raise ValueError("must be greater than 0")
    return seconds


def as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {_type_name(value)}")
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def parse_size(value: Any) -> int:
    """A byte count: an integer, or a string such as `"16MiB"`, `"500 kB"`, `"1GB"`."""
    if isinstance(value, bool):
        raise TypeError("expected a size in bytes, got a boolean")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be at least 1 byte, got {value}")
        return value
    if not isinstance(value, str):
        raise TypeError(f'expected a size (bytes, or a string like "16MiB"), got {_type_name(value)}')
    m = _SIZE_RE.fullmatch(value)
    if not m:
        raise ValueError(f"cannot read {value!r} as a size: use bytes or a unit B, kB, MB, GB, KiB, MiB, GiB")
    number, unit = m.groups()
    size = int(float(number) * _SIZE_UNITS[(unit or "b").lower()])
    if size < 1:
        raise ValueError(f"must be at least 1 byte, got {value!r}")
    return size


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
        raise TypeError(f"expected an array of addresses or CIDR ranges, got {_type_name(value)}")
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
        raise TypeError(f'expected a whole number of worker processes or "auto", got {_type_name(value)}')
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"expected from 1 to {MAX_WORKERS} worker processes, got {value}")
    return value


def parse_workers_text(value: Any) -> int | Literal["auto"]:
    """`--workers` or `TAG_GATE_WORKERS`: the same as `parse_workers`, from text."""
    text = as_str(value).strip()
    return parse_workers(int(text) if text.isdigit() else text)


def one_of(*choices: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        text = as_str(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {text!r}")
        return text

    return convert


# --------------------------------------------------------------------------- sections


def _read_server(r: _Reader) -> ServerConfig:
    d = ServerConfig()
    cfg = ServerConfig(
        listen=r.get("listen", d.listen, parse_address),
        upstream=r.get("upstream", d.upstream, parse_upstream),
        admin_listen=r.get("admin_listen", d.admin_listen, parse_address_or_off),
        preserve_host=r.get("preserve_host", d.preserve_host, as_bool),
        trusted_proxies=r.get("trusted_proxies", d.trusted_proxies, parse_networks),
        mode=r.get("mode", d.mode, one_of("enforce", "report-only")),
        methods=r.get("methods", d.methods, parse_methods),
        headers_with_underscores=r.get(
            "headers_with_underscores", d.headers_with_underscores, one_of("drop", "reject", "allow")
        ),
        access_log=r.get("access_log", d.access_log, as_bool),
        workers=r.get("workers", d.workers, parse_workers),
    )
    r.finish()
    return cfg


def _read_timeouts(r: _Reader) -> Timeouts:
    d = Timeouts()
    cfg = Timeouts(
        header=r.get("header", d.header, as_positive_seconds),
        keepalive=r.get("keepalive", d.keepalive, as_positive_seconds),
        connect=r.get("connect", d.connect, as_positive_seconds),
        read=r.get("read", d.read, as_positive_seconds),
        upstream_idle=r.get("upstream_idle", d.upstream_idle, as_positive_seconds),
        upstream_queue=r.get("upstream_queue", d.upstream_queue, as_positive_seconds),
        client_body=r.get("client_body", d.client_body, as_positive_seconds),
        grace=r.get("grace", d.grace, as_seconds),
        shutdown_delay=r.get("shutdown_delay", d.shutdown_delay, as_seconds),
        websocket_idle=r.get("websocket_idle", d.websocket_idle, as_positive_seconds),
    )
    r.finish()
    return cfg


WEBSOCKET_MAX_MESSAGE_CAP: Final = 1024**3
"""Largest `limits.websocket_max_message` accepted: a relayed message is held whole, in a
few copies, so one message near this size already costs gigabytes."""


def _websocket_message_size(value: Any) -> int:
    size = parse_size(value)
    if size > WEBSOCKET_MAX_MESSAGE_CAP:
        raise ValueError(f"at most 1GiB (each message is held whole in memory while it is relayed), got {value!r}")
    return size


def _read_limits(r: _Reader) -> Limits:
    d = Limits()
    cfg = Limits(
        max_request_body=r.get("max_request_body", d.max_request_body, parse_size),
        max_request_line=r.get("max_request_line", d.max_request_line, parse_size),
        max_header_size=r.get("max_header_size", d.max_header_size, parse_size),
        max_headers=r.get("max_headers", d.max_headers, as_count),
        max_connections=r.get("max_connections", d.max_connections, as_count),
        upstream_max_header_size=r.get("upstream_max_header_size", d.upstream_max_header_size, parse_size),
        upstream_max_headers=r.get("upstream_max_headers", d.upstream_max_headers, as_count),
        upstream_pool_size=r.get("upstream_pool_size", d.upstream_pool_size, as_count),
        upstream_queue=r.get("upstream_queue", d.upstream_queue, as_count),
        websocket_max_message=r.get("websocket_max_message", d.websocket_max_message, _websocket_message_size),
    )
    r.finish()
    return cfg


_CATEGORY_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_NO_STRINGS: tuple[str, ...] = ()


def as_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array of strings, got {_type_name(value)}")
    bad = [f"[{i}] {_type_name(v)}" for i, v in enumerate(value) if not isinstance(v, str)]
    if bad:
        raise TypeError(f"expected strings, got {', '.join(bad)}")
    return tuple(value)


def _read_categories(r: _Reader) -> tuple[tuple[str, str], ...]:
    """`[categories]`: name = "description" for each category the site adds."""
    out = []
    for key in list(r._data):
        value = r.get(key, None, as_str)
        if not _CATEGORY_NAME.fullmatch(key):
            r.problem(key, "category names are lower-case letters, digits, - and _ (starting with a letter)")
        elif key in BUILTIN_CATEGORIES:
            r.problem(key, "is a built-in category already")
        elif value is not None:
            out.append((key, value))
    return tuple(out)


def _category_checker(r: _Reader, categories: frozenset[str]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        name = as_str(value)
        if name not in categories:
            raise ValueError(f"unknown category {name!r} (known: {', '.join(sorted(categories))})")
        return name

    return convert


def _categories_list(categories: frozenset[str]) -> Callable[[Any], frozenset[str]]:
    def convert(value: Any) -> frozenset[str]:
        names = as_str_list(value)
        unknown = [n for n in names if n not in categories]
        if unknown:
            raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(map(repr, unknown))}")
        return frozenset(names)

    return convert


def _read_consent(
    r: _Reader, categories: frozenset[str], catalog_services: Mapping[str, str], registry: Registry
) -> ConsentSettings:
    """`[consent]`: the common keys, then one table per consent manager of `registry`
    (`[consent.onetrust]`, ...), read by that source's own `parse`. A key in the old flat
    form (`onetrust_groups`) is an error naming its new place."""
    d = ConsentSettings(registry=registry)
    known = registry.sources

    def sources(value: Any) -> tuple[str, ...]:
        names = as_str_list(value)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown source {', '.join(map(repr, unknown))} (known: {', '.join(known)})")
        if len(set(names)) != len(names):
            raise ValueError("a source is listed twice")
        return names

    def cookie_name(value: Any) -> str:
        name = as_str(value)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"{name!r}: use letters, digits, - and _ (it is also written into the page scripts)")
        return name

    order = r.get("sources", d.sources, sources)
    undecided = r.get("undecided", d.undecided, _categories_list(categories))
    gpc_refuses = r.get("gpc_refuses", d.gpc_refuses, _categories_list(categories))
    own_cookie = r.get("cookie_name", d.cookie_name, cookie_name)
    max_cookie_bytes = r.get("max_cookie_bytes", d.max_cookie_bytes, parse_size)
    context = ParseContext(categories, catalog_services)
    own: dict[str, Any] = {}
    for source in registry.entries:
        if source.parse is not None:
            table = r.table(source.name)
            own[source.name] = source.parse(table, context)
            table.finish()
        elif r.has(source.name):
            r.raw(source.name)
            r.problem(source.name, f"{source.name} has no settings")
    for key in list(r._data):
        moved = registry.flat_field(key)
        if moved is not None:
            r.raw(key)
            r.problem(key, f"moved: write [consent.{moved[0].name}] {moved[1]} = ...")
    r.finish()
    settings = ConsentSettings(
        sources=order,
        undecided=undecided,
        gpc_refuses=gpc_refuses,
        categories=categories,
        cookie_name=own_cookie,
        max_cookie_bytes=max_cookie_bytes,
        registry=registry,
        per_source=own,
    )
    for problem in settings_problems(settings):
        r.problem(problem.path(), problem.message)
    return settings


def _element_action(value: Any) -> Action:
    name = as_str(value)
    if name not in ELEMENT_ACTIONS:
        raise ValueError(f"expected one of {', '.join(map(repr, ELEMENT_ACTIONS))}, got {name!r}")
    return Action(name)


def _level(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number from {low} to {high}, got {_type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value}")
        return value

    return convert


def _read_html(r: _Reader, categories: frozenset[str], styles: Sequence[str]) -> HtmlConfig:
    d = HtmlConfig()

    def unknown_hosts(value: Any) -> str:
        name = as_str(value)
        if name != "keep" and name not in categories:
            raise ValueError(f'expected "keep" or a category ({", ".join(sorted(categories))}), got {name!r}')
        return name

    def hosts(value: Any) -> tuple[str, ...]:
        out = []
        problems = []
        for i, item in enumerate(as_str_list(value)):
            try:
                out.append(parse_host(item))
            except ValueError as exc:
                problems.append(f"[{i}] {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return tuple(out)

    def ratio(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 2:
            raise ValueError(f"expected a number of at least 2, got {value!r}")
        return float(value)

    per_category: list[tuple[str, Action]] = []
    cats = r.table("category")
    for name in list(cats._data):
        sub = cats.table(name)
        if name not in categories:
            cats.problem(name, f"unknown category {name!r}")
        action = sub.get("action", None, _element_action)
        sub.finish()
        if action is not None and name in categories:
            if name == ESSENTIAL:
                cats.problem(name, "essential elements are never refused, so they take no action")
            else:
                per_category.append((name, action))
    cfg = HtmlConfig(
        action=r.get("action", d.action, _element_action),
        category_actions=tuple(per_category),
        defer_style=r.get("defer_style", d.defer_style, one_of(*styles)),
        unknown_hosts=r.get("unknown_hosts", d.unknown_hosts, unknown_hosts),
        first_party_hosts=r.get("first_party_hosts", d.first_party_hosts, hosts),
        consent_mode=r.get("consent_mode", d.consent_mode, as_bool),
        inline_styles=r.get("inline_styles", d.inline_styles, as_bool),
        max_inline_script=r.get("max_inline_script", d.max_inline_script, parse_size),
        max_decoded_size=r.get("max_decoded_size", d.max_decoded_size, parse_size),
        max_ratio=r.get("max_ratio", d.max_ratio, ratio),
        gzip_level=r.get("gzip_level", d.gzip_level, _level(1, 9)),
        brotli_quality=r.get("brotli_quality", d.brotli_quality, _level(0, 11)),
        zstd_level=r.get("zstd_level", d.zstd_level, _level(1, 19)),
        decisions_header=r.get("decisions_header", d.decisions_header, as_bool),
    )
    r.finish()
    return cfg


def _read_cookies(r: _Reader, categories: frozenset[str]) -> CookieConfig:
    d = CookieConfig()

    def unknown(value: Any) -> str:
        name = as_str(value)
        if name not in ("keep", "drop") and name not in categories:
            raise ValueError(f'expected "keep", "drop" or a category, got {name!r}')
        return name

    cfg = CookieConfig(
        unknown=r.get("unknown", d.unknown, unknown),
        strip_request=r.get("strip_request", d.strip_request, as_bool),
        expire_on_withdrawal=r.get("expire_on_withdrawal", d.expire_on_withdrawal, as_bool),
        withdrawal_on=r.get("withdrawal_on", d.withdrawal_on, one_of("navigation", "all")),
        withdrawal_cap=r.get("withdrawal_cap", d.withdrawal_cap, as_count),
        essential=r.get("essential", d.essential, as_str_list),
        client_hints=r.get("client_hints", d.client_hints, as_bool),
    )
    r.finish()
    return cfg


def _read_rules(root: _Reader, categories: frozenset[str], vendor_ids: frozenset[str]) -> tuple[UrlRule, ...]:
    rules = []
    for i, r in enumerate(root.tables("rule")):
        name = r.get("name", f"rule[{i}]", as_str)
        raw_hosts = r.get("hosts", _NO_STRINGS, as_str_list)
        parsed = []
        for j, host in enumerate(raw_hosts):
            try:
                parsed.append(parse_host(host))
            except ValueError as exc:
                r.problem(f"hosts[{j}]", str(exc))
        hosts = tuple(parsed)

        def prefixes(value: Any) -> tuple[str, ...]:
            items = as_str_list(value)
            for item in items:
                if not item.startswith("/"):
                    raise ValueError(f"{item!r}: a path prefix starts with /")
            return items

        def regex(value: Any) -> re.Pattern[str]:
            try:
                return re.compile(as_str(value))
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None

        def vendor(value: Any) -> str:
            vid = as_str(value)
            if vid not in vendor_ids:
                raise ValueError(f"no vendor with id {vid!r} in the catalogue or [[vendor]]")
            return vid

        path_prefixes = r.get("path_prefix", _NO_STRINGS, lambda v: prefixes([v] if isinstance(v, str) else v))
        url_regex = r.get("url_regex", None, regex)
        vendor_id = r.get("vendor", None, vendor)
        inline = r.get("inline", _NO_STRINGS, as_str_list)
        category = r.get("category", None, _category_checker(r, categories))
        action = r.get("action", None, _element_action)
        allow = r.get("allow", False, as_bool)
        r.finish()
        if not (hosts or path_prefixes or url_regex or vendor_id or inline) and not raw_hosts:
            r.problem(None, "a rule needs at least one of hosts, path_prefix, url_regex, vendor, inline")
        if allow and (category or action):
            r.problem(None, "allow = true keeps matches untouched; it cannot also set category or action")
        if not allow and category is None and action is None:
            r.problem(None, "a rule needs allow = true, a category, or an action")
        if inline and (hosts or path_prefixes or url_regex or vendor_id):
            r.problem("inline", "inline signatures match inline scripts only; put URL matchers in another rule")
        rules.append(
            UrlRule(
                name=name,
                hosts=frozenset(hosts),
                path_prefixes=path_prefixes,
                url_regex=url_regex,
                vendor=vendor_id,
                inline=inline,
                category=category,
                action=action,
                allow=allow,
            )
        )
    return tuple(rules)


_COOKIE_GLOB: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _read_cookie_rules(root: _Reader, categories: frozenset[str]) -> tuple[CookieRule, ...]:
    rules = []
    for i, r in enumerate(root.tables("cookie")):
        name = r.get("name", f"cookie[{i}]", as_str)
        names = r.get("names", _NO_STRINGS, as_str_list)
        for j, n in enumerate(names):
            if not _COOKIE_GLOB.fullmatch(n):
                r.problem(f"names[{j}]", f"{n!r} is not a cookie name or a pattern with *")
        category = r.get("category", None, _category_checker(r, categories))
        allow = r.get("allow", False, as_bool)
        r.finish()
        if not names:
            r.problem("names", "required: the cookie names (or patterns with *) this rule covers")
        if allow == (category is not None):
            r.problem(None, "give exactly one of category or allow = true")
        rules.append(
            CookieRule(
                name=name,
                exact=frozenset(n for n in names if "*" not in n),
                pattern=compile_globs(names),
                category=category,
                allow=allow,
            )
        )
    return tuple(rules)


def _read_exceptions(root: _Reader) -> tuple[str, ...]:
    out = []
    for r in root.tables("exception"):
        prefix = r.get("path_prefix", None, as_str)
        r.finish()
        if prefix is None:
            r.problem("path_prefix", "required: the page path prefix where the HTML gate does not run")
        elif not prefix.startswith("/"):
            r.problem("path_prefix", f"{prefix!r}: a path prefix starts with /")
        else:
            out.append(prefix)
    return tuple(out)


def _read_vendors(root: _Reader, categories: frozenset[str], problems: list[str]) -> tuple[Vendor, ...]:
    root.raw("vendor")
    items = root._data.get("vendor", [])
    if not isinstance(items, list):
        problems.append(f"vendor: expected an array of tables ([[vendor]]), got {_type_name(items)}")
        return ()
    vendors = []
    for i, item in enumerate(items):
        try:
            vendors.append(parse_vendor(item, f"vendor[{i}]", categories))
        except VendorError as exc:
            problems.extend(exc.problems)
    return tuple(vendors)


def make_policy(config: Config | None, catalog: Catalog | None = None) -> Policy:
    """The compiled policy for a config (built-in defaults when `config` is None)."""
    catalog = catalog or make_catalog(config.vendors if config else ())
    if config is None:
        consent = ConsentSettings()
        return Policy(
            catalog, consent_cookies=_consent_cookie_names(consent), consent_cookie_prefixes=_consent_prefixes(consent)
        )
    html, cookies = config.html, config.cookies
    return Policy(
        catalog,
        rules=config.rules,
        cookie_rules=config.cookie_rules,
        default_action=html.action,
        category_actions=dict(html.category_actions),
        unknown_hosts=None if html.unknown_hosts == "keep" else html.unknown_hosts,
        first_party_hosts=frozenset(html.first_party_hosts),
        exceptions=config.exceptions,
        cookie_unknown=cookies.unknown,
        essential_cookies=frozenset(cookies.essential),
        consent_cookies=_consent_cookie_names(config.consent),
        consent_cookie_prefixes=_consent_prefixes(config.consent),
        categories=config.consent.categories,
    )


def _consent_cookie_names(consent: ConsentSettings) -> frozenset[str]:
    """Every cookie a known consent manager reads or writes (consent cookies are
    essential), whether or not it is in `sources`."""
    names: set[str] = set()
    for source in consent.registry.entries:
        names.update(source.cookies(consent))
        names.update(source.also_essential)
    return frozenset(names)


def _consent_prefixes(consent: ConsentSettings) -> tuple[str, ...]:
    return tuple(prefix for source in consent.registry.entries for prefix in source.cookie_prefixes)


def parse_config(data: Mapping[str, Any], source: str = "<config>", *, registry: Registry = DEFAULT_REGISTRY) -> Config:
    """Validate a decoded TOML document; raise `ConfigError` with every problem.
    `registry` holds the consent managers `[consent]` and `html.defer_style` may name."""
    problems: list[str] = []
    root = _Reader(data, "", problems)
    server = _read_server(root.table("server"))
    timeouts = _read_timeouts(root.table("timeouts"))
    limits = _read_limits(root.table("limits"))
    custom = _read_categories(root.table("categories"))
    categories = frozenset(BUILTIN_CATEGORIES) | {name for name, _ in custom}
    vendors = _read_vendors(root, categories, problems)
    try:
        catalog = make_catalog(vendors)
    except VendorError as exc:  # the built-in data itself is broken: report, don't crash
        problems.extend(f"built-in catalogue: {p}" for p in exc.problems)
        catalog = Catalog(vendors)
    catalog_services = {s: v.category for v in catalog.vendors for s in v.services}
    consent = _read_consent(root.table("consent"), categories, catalog_services, registry)
    html = _read_html(root.table("html"), categories, registry.styles)
    cookies = _read_cookies(root.table("cookies"), categories)
    vendor_ids = frozenset(v.id for v in catalog.vendors)
    rules = _read_rules(root, categories, vendor_ids)
    cookie_rules = _read_cookie_rules(root, categories)
    exceptions = _read_exceptions(root)
    root.finish()
    if problems:
        raise ConfigError(problems)
    config = Config(
        server=server,
        timeouts=timeouts,
        limits=limits,
        consent=consent,
        html=html,
        cookies=cookies,
        categories=custom,
        vendors=vendors,
        rules=rules,
        cookie_rules=cookie_rules,
        exceptions=exceptions,
        source=source,
    )
    return replace(config, policy=make_policy(config, catalog))


def load_config(path: str | Path | None, *, registry: Registry = DEFAULT_REGISTRY) -> Config:
    """Read a TOML file (or the built-in defaults when `path` is None)."""
    if path is None:
        return Config() if registry is DEFAULT_REGISTRY else parse_config({}, "<built-in defaults>", registry=registry)
    return parse_config_text(load_config_text(path), path, registry=registry)


def load_config_text(path: str | Path) -> str:
    """The text of the config file at `path`; ConfigError if it cannot be read or is
    not UTF-8."""
    p = Path(path)
    try:
        return p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None


def parse_config_text(text: str, path: str | Path, *, registry: Registry = DEFAULT_REGISTRY) -> Config:
    """Parse `text`, the contents of the config file at `path` (named in every problem,
    never read here): the same `Config` or `ConfigError` as `load_config(path)` gives for
    a file holding `text`. Worker processes build their config from the text the
    supervisor read, so that every process runs exactly what the supervisor accepted."""
    p = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML: {exc}"]) from None
    try:
        return parse_config(data, source=str(p), registry=registry)
    except ConfigError as exc:
        raise ConfigError([f"{p}: {line}" for line in exc.problems]) from None


OVERRIDABLE: Final[dict[str, Callable[[Any], Any]]] = {
    "listen": parse_address,
    "upstream": parse_upstream,
    "admin_listen": parse_address_or_off,
    "workers": parse_workers_text,
}
"""Server settings that flags and environment variables may override, with their parsers."""


def with_overrides(config: Config, overrides: Mapping[str, tuple[str, str]]) -> Config:
    """Apply `{setting: (origin, value)}` overrides (origin names the flag or variable).

    Raises `ConfigError` naming the origin of every bad value.
    """
    problems: list[str] = []
    changes: dict[str, Any] = {}
    for key, (origin, value) in overrides.items():
        try:
            changes[key] = OVERRIDABLE[key](value)
        except (ValueError, TypeError) as exc:
            problems.append(f"{origin}: {exc}")
    if problems:
        raise ConfigError(problems)
    return replace(config, server=replace(config.server, **changes))


def check_runnable(config: Config) -> list[str]:
    """Problems that make a parsed config unable to serve (e.g. no upstream at all)."""
    problems = []
    if config.server.upstream is None:
        problems.append(
            "server.upstream: not set; give it in the config file, with --upstream, or in TAG_GATE_UPSTREAM"
        )
    admin = config.server.admin_listen
    if admin is not None and admin == config.server.listen and admin.port != 0:
        problems.append("server.admin_listen: must differ from server.listen (health and metrics stay private)")
    return problems


def merge_reload(running: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """What a reload applies: `new`, except the settings that belong to what is already
    open (listener addresses, the upstream, timeouts, limits other than
    `max_request_body`, the number of workers), which keep their `running` values until a
    restart. Returns that config and the names of those settings `new` changes, for the
    log. Merging again from the result gives the same: the kept settings always come
    from the config the process started with."""
    fixed = {
        "server.listen": (running.server.listen, new.server.listen),
        "server.admin_listen": (running.server.admin_listen, new.server.admin_listen),
        "server.upstream": (running.server.upstream, new.server.upstream),
        "server.workers": (running.server.workers, new.server.workers),
        "timeouts": (running.timeouts, new.timeouts),
        "limits": (replace(running.limits, max_request_body=0), replace(new.limits, max_request_body=0)),
    }
    changed = tuple(name for name, (before, after) in fixed.items() if before != after)
    applied = replace(
        new,
        server=replace(
            new.server,
            listen=running.server.listen,
            admin_listen=running.server.admin_listen,
            upstream=running.server.upstream,
            workers=running.server.workers,
        ),
        timeouts=running.timeouts,
        limits=replace(running.limits, max_request_body=new.limits.max_request_body),
    )
    return applied, changed
