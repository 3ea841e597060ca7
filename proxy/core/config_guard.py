"""`[html.guard]` and `[html.csp]`: the runtime layers' settings (pure; read by `proxy.core.config`).

`[html.guard]` turns the runtime guard on or off for gated pages and says how it goes in. `[html.csp]` is the
CSP layer: its mode (`report-only`, `enforce`, `off`), the fraction of gated pages that
carry the header, which fetch directives it writes, whose hosts it allows beside the
site's own, the cap on its size, and the report endpoint's limits. `csp_problems` checks
what needs the catalogue (vendor ids, the header's size), with TOML paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .categories import BUILTIN_CATEGORIES
from .consent import ConsentState
from .csp import CSP_DIRECTIVES, CspHeaders, CspLayer
from .reader import Reader, as_bool, as_count, one_of, parse_size, type_name
from .vendors import Vendor

__all__ = ["CspConfig", "GuardConfig", "csp_problems", "read_csp", "read_guard"]


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """`[html.guard]`."""

    enabled: bool = True
    """Insert the runtime guard into gated pages whose visitor refused something."""
    delivery: Literal["inline", "external"] = "inline"
    """"inline": in the page (no request before the page's scripts run, about 21 KB on
    every gated page); "external": `/__tag-gate/guard.js?k=..&v=..`, which the browser
    caches, wherever the site's policy lets that run (else inline)."""


@dataclass(frozen=True, slots=True)
class CspConfig:
    """`[html.csp]` (see config/tag-gate.toml for what each key does)."""

    mode: Literal["report-only", "enforce", "off"] = "report-only"
    sample: float = 0.1
    directives: tuple[str, ...] = CSP_DIRECTIVES
    vendors: Literal["granted", "none"] | tuple[str, ...] = "none"
    max_header_size: int = 8192
    report_rate: float = 20.0
    report_burst: int = 200
    max_report_size: int = 65536
    gap_hosts: int = 1000

    @property
    def layer(self) -> CspLayer:
        return CspLayer(self.mode, self.directives, self.vendors)


def read_guard(r: Reader) -> GuardConfig:
    d = GuardConfig()
    cfg = GuardConfig(
        enabled=r.get("enabled", d.enabled, as_bool),
        delivery=r.get("delivery", d.delivery, one_of("inline", "external")),
    )
    r.finish()
    return cfg


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"expected a number from 0 to 1, got {type_name(value)}")
    if not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {value}")
    return float(value)


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"expected a number of reports per second, got {type_name(value)}")
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return float(value)


def _directives(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError(f"expected a non-empty array of directive names, got {type_name(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        if item not in CSP_DIRECTIVES:
            raise ValueError(f"[{i}] expected one of {', '.join(CSP_DIRECTIVES)}, got {item!r}")
        if item in out:
            raise ValueError(f"[{i}] {item!r} is listed twice")
        out.append(item)
    return tuple(out)


def _vendors(value: Any) -> Literal["granted", "none"] | tuple[str, ...]:
    if value in ("granted", "none"):
        return value  # type: ignore[no-any-return]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f'expected "granted", "none" or an array of vendor ids, got {value!r}')


def read_csp(r: Reader) -> CspConfig:
    d = CspConfig()
    cfg = CspConfig(
        mode=r.get("mode", d.mode, one_of("report-only", "enforce", "off")),
        sample=r.get("sample", d.sample, _fraction),
        directives=r.get("directives", d.directives, _directives),
        vendors=r.get("vendors", d.vendors, _vendors),
        max_header_size=r.get("max_header_size", d.max_header_size, parse_size),
        report_rate=r.get("report_rate", d.report_rate, _rate),
        report_burst=r.get("report_burst", d.report_burst, as_count),
        max_report_size=r.get("max_report_size", d.max_report_size, parse_size),
        gap_hosts=r.get("gap_hosts", d.gap_hosts, as_count),
    )
    r.finish()
    return cfg


_EVERYTHING_KEY: Final = "all"


def csp_problems(
    csp: CspConfig, vendors: Sequence[Vendor], first_party_hosts: Iterable[str], categories: Iterable[str]
) -> list[str]:
    """What `[html.csp]` asks that the catalogue cannot give: unknown vendor ids, an
    enforcing policy that would block every third party, a header over
    `max_header_size` (measured for a visitor who granted everything, the longest)."""
    problems: list[str] = []
    if csp.mode == "off":
        return problems
    ids = {v.id for v in vendors}
    if isinstance(csp.vendors, tuple):
        for i, vendor in enumerate(csp.vendors):
            if vendor not in ids:
                problems.append(f"html.csp.vendors[{i}]: unknown vendor id {vendor!r}")
    if csp.mode == "enforce" and csp.vendors == "none":
        problems.append(
            'html.csp.vendors: mode "enforce" with vendors "none" would block every third-party request, granted'
            ' or not: name the vendors the site uses (or "granted")'
        )
    if problems:
        return problems
    granted = frozenset({*BUILTIN_CATEGORIES, *categories})
    everyone = ConsentState(granted, True, "check", False, _EVERYTHING_KEY, "")
    headers = CspHeaders(csp.layer, vendors, first_party_hosts)
    size = len(headers.value(everyone, worker=True))
    if size > csp.max_header_size:
        problems.append(
            f"html.csp.vendors: the header would be {size} bytes when every category is granted, over"
            f" html.csp.max_header_size ({csp.max_header_size}); name the vendors the site uses instead"
            f" of {csp.vendors!r}, or raise the cap if every proxy in front of tag-gate takes such headers"
        )
    return problems
