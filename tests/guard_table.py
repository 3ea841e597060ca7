"""The shared URL decision table (tests/data/url_decisions.json), read for both sides:
tests/test_guard.py runs it through `Policy.decide_url`, tests/e2e/test_guard.py through
the guard in Chromium."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from proxy.core.config import make_policy, parse_config
from proxy.core.consent import ConsentState, read_consent
from proxy.core.policy import Policy

TABLE = Path(__file__).parent / "data" / "url_decisions.json"
PAGE_HOST = "www.shop.test"


@dataclass(frozen=True)
class Row:
    index: int
    policy: str
    page: str
    url: str
    granted: tuple[str, ...]
    blocked: bool
    vendor: str | None
    guard_vendor: str | None
    note: str

    @property
    def id(self) -> str:
        return f"{self.index}:{self.policy}:{self.url[:60]!r}:{'+'.join(self.granted) or 'none'}"


@cache
def _data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TABLE.read_text(encoding="utf-8"))
    return data


def rows() -> list[Row]:
    out = []
    for i, raw in enumerate(_data()["rows"]):
        out.append(
            Row(
                index=i,
                policy=raw.get("policy", "default"),
                page=raw.get("page", PAGE_HOST),
                url=raw["url"],
                granted=tuple(raw["granted"]),
                blocked=raw["blocked"],
                vendor=raw.get("vendor"),
                guard_vendor=raw.get("guard_vendor", raw.get("vendor")),
                note=raw.get("note", ""),
            )
        )
    return out


def policy_sections(name: str) -> dict[str, Any]:
    sections: dict[str, Any] = _data()["policies"][name]
    return sections


@cache
def policy(name: str) -> Policy:
    return make_policy(parse_config(policy_sections(name)))


def consent(granted: tuple[str, ...]) -> ConsentState:
    """The visitor's consent as tag-gate reads it from a native cookie granting `granted`."""
    return read_consent(f"tg_consent={'.'.join(granted)}", None)
