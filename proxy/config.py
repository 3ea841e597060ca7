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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """All in seconds. `read` is the longest silence accepted from the upstream, before or
    during the body; there is deliberately no total timeout (long downloads are fine)."""

    header: float = 10.0
    keepalive: float = 75.0
    connect: float = 5.0
    read: float = 60.0
    upstream_idle: float = 10.0
    grace: float = 25.0
    shutdown_delay: float = 0.0


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


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
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
        grace=r.get("grace", d.grace, as_seconds),
        shutdown_delay=r.get("shutdown_delay", d.shutdown_delay, as_seconds),
    )
    r.finish()
    return cfg


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
    )
    r.finish()
    return cfg


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a decoded TOML document; raise `ConfigError` with every problem."""
    problems: list[str] = []
    root = _Reader(data, "", problems)
    server = _read_server(root.table("server"))
    timeouts = _read_timeouts(root.table("timeouts"))
    limits = _read_limits(root.table("limits"))
    root.finish()
    if problems:
        raise ConfigError(problems)
    return Config(server=server, timeouts=timeouts, limits=limits, source=source)


def load_config(path: str | Path | None) -> Config:
    """Read a TOML file (or the built-in defaults when `path` is None)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML: {exc}"]) from None
    try:
        return parse_config(data, source=str(p))
    except ConfigError as exc:
        raise ConfigError([f"{p}: {line}" for line in exc.problems]) from None


OVERRIDABLE: Final[dict[str, Callable[[Any], Any]]] = {
    "listen": parse_address,
    "upstream": parse_upstream,
    "admin_listen": parse_address_or_off,
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
