"""Reading raw cookie values: the helpers every consent manager's reader shares.

Mapping rule for readers that map several CMP keys (groups, services, purposes) onto
one category (`refusal_wins`): a category is granted when at least one key mapped to it
is granted and **no key mapped to it is present and refused**. A visitor who accepted
Google Analytics but refused Matomo has not accepted analytics. Keys absent from the
cookie neither grant nor refuse. Unknown keys grant nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from typing import Final
from urllib.parse import unquote

from ..categories import ESSENTIAL
from .source import ABSENT, CONFLICT, OVERSIZED, DecidedAt, Jar, Reading, View

_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decided(granted: Iterable[str], view: View) -> Reading:
    """A decision granting `granted`, limited to known non-essential categories."""
    return Reading(True, True, frozenset(granted) & view.categories - {ESSENTIAL})


def refusal_wins(entries: Iterable[tuple[Collection[str], bool]], view: View) -> Reading:
    """A decided reading from (categories, granted?) pairs; see the module docstring.
    It speaks for the categories of the keys present (`Reading.covers`): a category
    whose keys are all absent from the cookie is neither granted nor refused by it."""
    granted: set[str] = set()
    refused: set[str] = set()
    for categories, ok in entries:
        (granted if ok else refused).update(categories)
    reading = decided(granted - refused, view)
    return replace(reading, covers=frozenset(granted | refused) & view.categories - {ESSENTIAL})


def dated(reading: Reading, at: DecidedAt | None) -> Reading:
    """`reading` with its decision date, when it is a decision and the date is known."""
    if at is None or not reading.decided:
        return reading
    return replace(reading, at=at)


def prepare(value: str, view: View) -> str | Reading:
    """Size-check a raw cookie value and drop RFC 6265 double quotes around it."""
    limit = view.max_cookie_bytes
    if len(value) > limit or (not value.isascii() and len(value.encode("utf-8", "surrogatepass")) > limit):
        return OVERSIZED
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def percent_decode(value: str, *, plus: bool = False) -> str:
    """Strict percent-decoding: a stray `%` or bytes that are not UTF-8 raise ValueError
    (urllib's `unquote` would pass the first through silently)."""
    if "%" not in value:
        return value.replace("+", " ") if plus else value
    if _BAD_PERCENT.search(value):
        raise ValueError("invalid percent-encoding")
    if plus:
        value = value.replace("+", " ")
    return unquote(value, errors="strict")


def json_object(text: str) -> dict[str, object]:
    """Parse a JSON object, refusing duplicated keys (which would let the last copy
    silently win) and deep nesting (RecursionError is turned into ValueError)."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, item in pairs:
            if key in out:
                raise ValueError(f"JSON key {key!r} repeated")
            out[key] = item
        return out

    try:
        parsed: object = json.loads(text, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError("JSON value is not an object")
    return parsed


def string_list(value: object, what: str) -> list[str]:
    """`value` when it is a list of strings; ValueError naming `what` otherwise."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} is not a list of strings")
    return value


def one(jar: Jar, name: str) -> str | Reading:
    """The single value of a cookie (`ABSENT` when not sent); duplicates with different
    values conflict."""
    values = jar.get(name)
    if not values:
        return ABSENT
    first = values[0]
    for other in values[1:]:
        if other != first:
            return CONFLICT
    return first


def single_cookie(
    name: Callable[[View], str], reader: Callable[[str, View], Reading]
) -> Callable[[Jar, View], Reading]:
    """A `Source.read` for a CMP that keeps its choice in one cookie: the cookie named
    `name(view)`, read by `reader` when sent once (or several times with one value)."""

    def read(jar: Jar, view: View) -> Reading:
        value = one(jar, name(view))
        return value if isinstance(value, Reading) else reader(value, view)

    return read
