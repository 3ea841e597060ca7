"""TOML config file → one frozen `Config` (pure: no aiohttp, no lol-html, no sockets).

Contract:
- `parse_config(data)` takes the decoded TOML document and returns a `Config`, or raises
  `ConfigError` listing *every* problem found, each prefixed with its TOML path
  (`server.listen: ...`, `vendor[3].hosts[0]: ...`). Unknown keys are errors.
- `load_config(path)` reads and parses a file; `load_config(None)` gives the built-in
  defaults. Overrides from the command line or the environment are applied with
  `proxy.core.running.with_overrides`, which re-validates them the same way.
- Everything that can be compiled is compiled here, once, so the request path only
  reads finished values.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from .actions import Action
from .addresses import (
    DEFAULT_METHODS,
    NEVER_FORWARDED_METHODS,
    Address,
    IPNetwork,
    Upstream,
    parse_address,
    parse_address_or_off,
    parse_methods,
    parse_networks,
    parse_upstream,
    parse_workers,
)
from .banner import BannerError, BannerSettings, parse_banner
from .catalog import Catalog, Vendor, VendorError, make_catalog, parse_host
from .categories import BUILTIN_CATEGORIES, ESSENTIAL
from .config_guard import CspConfig, GuardConfig, csp_problems, read_csp, read_guard
from .config_rules import (
    element_action,
    read_cookie_rules,
    read_exceptions,
    read_rules,
    read_vendors,
)
from .consent import DEFAULT_REGISTRY, ConsentSettings, ParseContext, Registry, settings_problems
from .defer import STYLES
from .encoding_labels import ASCII_INCOMPATIBLE, encoding_for_label
from .policy import CookieRule, Policy, UrlRule
from .reader import (
    Reader,
    as_bool,
    as_count,
    as_positive_seconds,
    as_seconds,
    as_str,
    as_str_list,
    level,
    one_of,
    parse_size,
)
from .tags import Tag, read_tags

__all__ = [
    "DEFAULT_METHODS",
    "NEVER_FORWARDED_METHODS",
    "Address",
    "Config",
    "ConfigError",
    "CookieConfig",
    "CspConfig",
    "GuardConfig",
    "HtmlConfig",
    "IPNetwork",
    "Limits",
    "ServerConfig",
    "Timeouts",
    "Upstream",
    "as_bool",
    "as_count",
    "as_seconds",
    "as_str",
    "load_config",
    "make_policy",
    "parse_address",
    "parse_address_or_off",
    "parse_config",
    "parse_methods",
    "parse_networks",
    "parse_size",
    "parse_upstream",
]


class ConfigError(Exception):
    """One or more problems in a config; `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


@dataclass(frozen=True, slots=True)
class HtmlConfig:
    """`[html]`: how refused elements are treated and how bodies are decoded."""

    action: Action = Action.REMOVE
    category_actions: tuple[tuple[str, Action], ...] = ()
    defer_style: str = "tag-gate"
    unknown_hosts: str = "keep"
    first_party_hosts: tuple[str, ...] = ()
    consent_mode: bool = True
    inline_styles: bool = True
    max_inline_script: int = 1 << 20
    max_decoded_size: int = 64 << 20
    max_ratio: float = 100.0
    gzip_level: int = 1
    brotli_quality: int = 4
    zstd_level: int = 3
    decisions_header: bool = False
    guard: GuardConfig = GuardConfig()
    """`[html.guard]`: the runtime guard (proxy/core/config_guard.py)."""
    csp: CspConfig = CspConfig()
    """`[html.csp]`: the CSP layer and its report endpoint."""
    cache_size: int = 64 << 20
    """Bytes of gated pages kept for reuse (`proxy.html.cache`); 0 turns the cache off."""
    default_charset: str = "windows-1252"
    """The encoding assumed for a page that declares none (the Encoding Standard's name)."""


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
    banner: BannerSettings = field(default_factory=BannerSettings)
    """`[banner]`: tag-gate's own consent banner (off by default)."""
    tags: tuple[Tag, ...] = ()
    """`[[tag]]`: the site's tags, inserted into gated pages by consent."""
    policy: Policy = field(default_factory=lambda: make_policy(None))
    source: str = "<built-in defaults>"
    """Where the config came from, for logs and `check-config`."""


# --------------------------------------------------------------------------- sections


def _read_server(r: Reader) -> ServerConfig:
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


def _read_timeouts(r: Reader) -> Timeouts:
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


def _read_limits(r: Reader) -> Limits:
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


def _read_categories(r: Reader) -> tuple[tuple[str, str], ...]:
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


def _categories_list(categories: frozenset[str]) -> Callable[[Any], frozenset[str]]:
    def convert(value: Any) -> frozenset[str]:
        names = as_str_list(value)
        unknown = [n for n in names if n not in categories]
        if unknown:
            raise ValueError(f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(map(repr, unknown))}")
        return frozenset(names)

    return convert


def _read_consent(
    r: Reader, categories: frozenset[str], catalog_services: Mapping[str, str], registry: Registry
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


def size_or_off(value: Any) -> int:
    """A size as `parse_size` reads it, or 0 (off)."""
    if value == 0 or value == "0":
        return 0
    return parse_size(value)


def _read_html(r: Reader, categories: frozenset[str], styles: Sequence[str]) -> HtmlConfig:
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

    def page_encoding(value: Any) -> str:
        encoding = encoding_for_label(as_str(value))
        if encoding is None:
            raise ValueError(f"unknown encoding label {value!r} (labels of the Encoding Standard, e.g. 'shift_jis')")
        if encoding in ASCII_INCOMPATIBLE or encoding == "replacement":
            raise ValueError(f"{encoding} cannot be a default: pages without a declaration are read as ASCII")
        return encoding

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
        action = sub.get("action", None, element_action)
        sub.finish()
        if action is not None and name in categories:
            if name == ESSENTIAL:
                cats.problem(name, "essential elements are never refused, so they take no action")
            else:
                per_category.append((name, action))
    cfg = HtmlConfig(
        action=r.get("action", d.action, element_action),
        category_actions=tuple(per_category),
        defer_style=r.get("defer_style", d.defer_style, one_of(*styles)),
        unknown_hosts=r.get("unknown_hosts", d.unknown_hosts, unknown_hosts),
        first_party_hosts=r.get("first_party_hosts", d.first_party_hosts, hosts),
        consent_mode=r.get("consent_mode", d.consent_mode, as_bool),
        inline_styles=r.get("inline_styles", d.inline_styles, as_bool),
        max_inline_script=r.get("max_inline_script", d.max_inline_script, parse_size),
        max_decoded_size=r.get("max_decoded_size", d.max_decoded_size, parse_size),
        max_ratio=r.get("max_ratio", d.max_ratio, ratio),
        gzip_level=r.get("gzip_level", d.gzip_level, level(1, 9)),
        brotli_quality=r.get("brotli_quality", d.brotli_quality, level(0, 11)),
        zstd_level=r.get("zstd_level", d.zstd_level, level(1, 19)),
        decisions_header=r.get("decisions_header", d.decisions_header, as_bool),
        guard=read_guard(r.table("guard")),
        csp=read_csp(r.table("csp")),
        cache_size=r.get("cache_size", d.cache_size, size_or_off),
        default_charset=r.get("default_charset", d.default_charset, page_encoding),
    )
    r.finish()
    return cfg


def _read_cookies(r: Reader, categories: frozenset[str]) -> CookieConfig:
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
    root = Reader(data, "", problems)
    server = _read_server(root.table("server"))
    timeouts = _read_timeouts(root.table("timeouts"))
    limits = _read_limits(root.table("limits"))
    custom = _read_categories(root.table("categories"))
    categories = frozenset(BUILTIN_CATEGORIES) | {name for name, _ in custom}
    vendors = read_vendors(root, categories, problems)
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
    rules = read_rules(root, categories, vendor_ids)
    cookie_rules = read_cookie_rules(root, categories)
    exceptions = read_exceptions(root)
    tags = read_tags(root, categories)
    banner = _read_banner(root, categories, vendor_ids, problems)
    root.finish()
    if server.mode == "report-only" and (banner.enabled or tags):
        problems.append(
            f"{'banner.enabled' if banner.enabled else 'tag'}: report-only mode changes no page, so "
            f"{'the banner' if banner.enabled else 'the [[tag]] entries'} would never reach one; "
            'use server.mode = "enforce"'
        )
    if banner.enabled and "tag-gate" not in consent.sources:
        problems.append('banner.enabled: the banner writes tg_consent: consent.sources must list "tag-gate"')
    if banner.enabled and banner.proof_sink == "file" and server.workers != 1:
        problems.append(
            'banner.proof_sink: "file" with several workers would have every worker rotate the same file; '
            'use "stdout" (the supervisor relays every worker\'s lines) or server.workers = 1'
        )
    problems += csp_problems(html.csp, catalog.vendors, html.first_party_hosts, categories)
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
        banner=banner,
        tags=tags,
        source=source,
    )
    return replace(config, policy=make_policy(config, catalog))


def _read_banner(
    root: Reader, categories: frozenset[str], vendor_ids: frozenset[str], problems: list[str]
) -> BannerSettings:
    """`[banner]`, validated by `proxy.core.banner.parse_banner` (its problems carry their
    TOML paths already)."""
    table = root.raw("banner")
    if table is None:
        return BannerSettings()
    try:
        return parse_banner(table, categories=categories, vendor_ids=vendor_ids)
    except BannerError as exc:
        problems.extend(exc.problems)
        return BannerSettings()


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
