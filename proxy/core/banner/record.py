"""What the browser writes: the `tg_consent` cookie and the proof-of-consent POST (pure).

banner.js writes `tg_consent=<granted>~<policy version>~<unix seconds>~<consent id>`
(`parse_consent_cookie`) and POSTs a record of each choice to `/__tag-gate/consent`
(`parse_consent_record`, docs/consent-record.schema.json). Both parsers raise
ValueError naming the first problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

from ..categories import BUILTIN_CATEGORIES, ESSENTIAL

CONSENT_ID: Final = re.compile(r"[A-Za-z0-9_-]{16,24}")
"""A consent id as banner.js writes it (22 characters today)."""
_CATEGORY_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ConsentCookie:
    """The native cookie as banner.js writes it: `<granted>~<version>~<time>~<id>`."""

    granted: frozenset[str]
    policy_version: int
    """0 for a value without the `~` fields (written by hand or by bridge.js)."""
    time: int
    """Unix seconds of the decision (0 when unknown)."""
    consent_id: str


def parse_consent_cookie(value: str) -> ConsentCookie:
    """Read a `tg_consent` value: granted categories joined by `.`, then optionally
    `~policy version~unix seconds~consent id`. Raises ValueError when the `~` part is
    present but malformed (the categories alone are read as `read_native` does)."""
    names, sep, rest = value.partition("~")
    granted = frozenset(n.strip().lower() for n in re.split(r"[.,|]", names) if n.strip()) - {"none"}
    if not sep:
        return ConsentCookie(granted, 0, 0, "")
    fields = rest.split("~")
    if len(fields) != 3:
        raise ValueError(f"expected granted~version~time~id, got {len(fields) + 1} fields")
    version, when, consent_id = fields
    if not version.isdigit() or len(version) > 6 or not when.isdigit() or len(when) > 12:
        raise ValueError("version and time must be whole numbers")
    if not CONSENT_ID.fullmatch(consent_id):
        raise ValueError("the consent id must be 16 to 24 characters of A-Z a-z 0-9 _ -")
    return ConsentCookie(granted, int(version), int(when), consent_id)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One proof-of-consent POST body (docs/consent-record.schema.json)."""

    consent_id: str
    policy_version: int
    granted: tuple[str, ...]
    refused: tuple[str, ...]
    page: str
    time: int
    action: Literal["accept_all", "refuse_all", "save"]


_RECORD_KEYS: Final = ("consent_id", "policy_version", "granted", "refused", "page", "time", "action")
MAX_RECORD_BYTES: Final = 8192
_ACTIONS: Final = ("accept_all", "refuse_all", "save")


def parse_consent_record(body: bytes, categories: Collection[str] = BUILTIN_CATEGORIES) -> ConsentRecord:
    """Validate a POST body from banner.js; raises ValueError naming the first problem.

    Strict, as the schema: exactly the seven keys, a consent id of 16-24 URL-safe
    characters, granted and refused disjoint lists of known non-essential categories,
    an http(s) page URL without query or fragment, whole-number version and time.
    """
    if len(body) > MAX_RECORD_BYTES:
        raise ValueError(f"body larger than {MAX_RECORD_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if set(data) != set(_RECORD_KEYS):
        missing = sorted(set(_RECORD_KEYS) - set(data))
        extra = sorted(set(data) - set(_RECORD_KEYS))
        raise ValueError(f"keys differ from the schema: missing {missing}, unknown {extra}")
    consent_id = data["consent_id"]
    if not isinstance(consent_id, str) or not CONSENT_ID.fullmatch(consent_id):
        raise ValueError("consent_id: expected 16 to 24 characters of A-Z a-z 0-9 _ -")
    for name in ("policy_version", "time"):
        if isinstance(data[name], bool) or not isinstance(data[name], int) or data[name] < (name == "policy_version"):
            raise ValueError(f"{name}: expected a whole number")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("granted", "refused"):
        items = data[name]
        if not isinstance(items, list) or not all(isinstance(c, str) and _CATEGORY_NAME.fullmatch(c) for c in items):
            raise ValueError(f"{name}: expected an array of category names")
        if len(set(items)) != len(items):
            raise ValueError(f"{name}: a category is listed twice")
        unknown = [c for c in items if c not in categories or c == ESSENTIAL]
        if unknown:
            raise ValueError(f"{name}: not a category that needs consent: {', '.join(unknown)}")
        lists[name] = tuple(items)
    if set(lists["granted"]) & set(lists["refused"]):
        raise ValueError("a category is both granted and refused")
    page = data["page"]
    if not isinstance(page, str) or len(page) > 2048 or not re.fullmatch(r"https?://[^\s?#]+", page):
        raise ValueError("page: expected an http(s) URL without query or fragment")
    action = data["action"]
    if action not in _ACTIONS:
        raise ValueError(f"action: expected one of {', '.join(_ACTIONS)}")
    return ConsentRecord(
        consent_id=consent_id,
        policy_version=data["policy_version"],
        granted=lists["granted"],
        refused=lists["refused"],
        page=page,
        time=data["time"],
        action=action,
    )
