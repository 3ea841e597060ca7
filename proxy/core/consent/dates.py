"""Decision dates written by consent managers → `DecidedAt` (pure).

Every parser returns None for anything it cannot read, for a zero, and for a date
outside 2000-01-01 .. 9999-12-31: an unreadable date only means the source's decision
carries no date (resolution then lets a refusal win), never that the cookie is broken.
The span of a `DecidedAt` is the resolution of the stamp: one second for a seconds
stamp, one millisecond for `Date.now()`, one day for a day-level TCF stamp.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from .source import DecidedAt

_EARLIEST: Final = 946684800.0
"""2000-01-01T00:00:00Z: no consent manager wrote a decision before that."""
_LATEST: Final = 253402300800.0
"""10000-01-01T00:00:00Z."""

DAY: Final = 86400.0

_MONTHS: Final = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_JS_DATE: Final = re.compile(
    r"(?:[A-Za-z]{3}\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{4})\s+(\d{2}):(\d{2}):(\d{2})"
    r"\s+GMT([+-])(\d{2}):?(\d{2})(?:\s+\(.{0,80}\))?"
)
"""JavaScript's `Date.prototype.toString()`: `Thu Sep 26 2024 06:52:32 GMT+0900 (Korean
Standard Time)`; OneTrust writes it into `datestamp`."""
_ISO: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:?\d{2})")
"""ISO 8601 with a zone, as `Date.prototype.toISOString()` writes it."""


def _zone(sign: str, hours: str, minutes: str) -> timezone:
    """A fixed UTC offset; ValueError past ±24 hours or 59 minutes."""
    if int(minutes) > 59:
        raise ValueError("minutes out of range")
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(offset if sign == "+" else -offset)


def _span(start: float, width: float) -> DecidedAt | None:
    if not _EARLIEST <= start < _LATEST:
        return None
    return DecidedAt(start, start + width)


def from_unix_seconds(value: int | str) -> DecidedAt | None:
    """Whole Unix seconds (the native cookie's `~time~` field)."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 12:
            return None
        value = int(value)
    return _span(float(value), 1.0)


def from_unix_millis(value: str) -> DecidedAt | None:
    """Unix milliseconds (`Date.now()`, Cookiebot's `utc`)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        return None
    return _span(int(value) / 1000, 0.001)


def from_tcf_deciseconds(value: int) -> DecidedAt | None:
    """A TC string's 36-bit `LastUpdated` (deciseconds). Since TCF 2.2 CMPs write it at
    day level (midnight UTC): such a stamp stands for its whole day."""
    seconds = value / 10
    if value % (int(DAY) * 10) == 0:
        return _span(seconds, DAY)
    return _span(seconds, 0.1)


def from_iso8601(text: str) -> DecidedAt | None:
    """`2024-08-27T07:52:40.352Z` (Didomi's `updated`, OneTrust's `OptanonAlertBoxClosed`).
    A time without a zone is not read: it could be any of 26 hours."""
    m = _ISO.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        if zone in ("Z", "z"):
            tz = UTC
        else:
            digits = zone[1:].replace(":", "")
            tz = _zone(zone[0], digits[:2], digits[2:])
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError:
        return None
    start = moment.timestamp()
    if fraction:
        start += int(fraction) / 10 ** len(fraction)
        return _span(start, 10.0 ** -len(fraction))
    return _span(start, 1.0)


def from_js_date(text: str) -> DecidedAt | None:
    """`Thu Sep 26 2024 06:52:32 GMT+0900 (Korean Standard Time)` (OneTrust's `datestamp`)."""
    m = _JS_DATE.fullmatch(text.strip())
    if m is None:
        return None
    month = _MONTHS.get(m.group(1).lower())
    if month is None:
        return None
    try:
        tz = _zone(m.group(7), m.group(8), m.group(9))
        hour, minute, second = int(m.group(4)), int(m.group(5)), int(m.group(6))
        moment = datetime(int(m.group(3)), month, int(m.group(2)), hour, minute, second, tzinfo=tz)
    except ValueError:
        return None
    return _span(moment.timestamp(), 1.0)
