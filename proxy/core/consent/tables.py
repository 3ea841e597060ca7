"""A consent manager's settings: dataclass defaults, reading its TOML table, checks.

The readers only check shapes (a table of arrays of strings, a string, ...) and report
each bad entry at its own path; what the values mean (known categories, valid cookie
names, lower-case keys) is checked by the `check_*` helpers, which serve settings read
from TOML and settings built in code alike.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from .source import Check, Table

T = TypeVar("T")

COOKIE_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 6265 cookie name (a token)."""

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def frozen_sets(mapping: Mapping[str, Collection[str]]) -> Mapping[str, frozenset[str]]:
    """An immutable name → frozenset of categories map (for built-in defaults)."""
    return MappingProxyType({k: frozenset(v) for k, v in mapping.items()})


def shared(value: T) -> T:
    """A dataclass default that is an immutable mapping shared by every instance."""
    return dataclasses.field(default_factory=lambda: value)


def toml_key(name: str) -> str:
    """`name` as one key of a dotted TOML path: bare when it can be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _not_strings(value: object) -> str:
    """What a value that should be an array of strings is instead."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                return f"{type_name(item)} at [{i}]"
    return type_name(value)


def _entries(table: Table, key: str, shape: str) -> Mapping[str, Any]:
    def convert(value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table of {shape}, got {type_name(value)}")
        return value

    return table.get(key, {}, convert)


def read_category_sets(table: Table, key: str) -> dict[str, frozenset[str]]:
    """`key = { name = ["category", ...], ... }`: the entries given, to be merged over
    the defaults (an empty array makes a name grant nothing)."""
    out: dict[str, frozenset[str]] = {}
    for name, item in _entries(table, key, 'name = ["category", ...]').items():
        if _is_strings(item):
            out[name] = frozenset(item)
        else:
            table.problem(f"{key}.{toml_key(name)}", f"expected an array of category names, got {_not_strings(item)}")
    return out


def read_services(table: Table, key: str, categories: frozenset[str]) -> dict[str, str]:
    """`key = { service = "category", ... }`: the entries given, keys lower-cased (CMP
    service names are matched case-insensitively). Unknown categories are reported here,
    under the key as written, and left out."""
    out: dict[str, str] = {}
    for name, item in _entries(table, key, 'service = "category"').items():
        where = f"{key}.{toml_key(name)}"
        if not isinstance(item, str):
            table.problem(where, f"expected a category name, got {type_name(item)}")
        elif item not in categories:
            table.problem(where, f"unknown category {item!r}")
        else:
            out[name.lower()] = item
    return out


def read_categories(table: Table, key: str, default: frozenset[str]) -> frozenset[str]:
    """`key = ["category", ...]`."""

    def convert(value: Any) -> frozenset[str]:
        if not _is_strings(value):
            raise TypeError(f"expected an array of category names, got {_not_strings(value)}")
        return frozenset(value)

    return table.get(key, default, convert)


def read_string(table: Table, key: str, default: str) -> str:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type_name(value)}")
        return value

    return table.get(key, default, convert)


def check_categories(field: str, names: Collection[str], categories: frozenset[str]) -> Iterator[Check]:
    for name in sorted(names):
        if name not in categories:
            yield field, None, f"unknown category {name!r}"


def check_category_sets(
    field: str, mapping: Mapping[Any, Collection[str]], categories: frozenset[str]
) -> Iterator[Check]:
    for key in sorted(mapping):
        for name in sorted(mapping[key]):
            if name not in categories:
                yield field, key, f"unknown category {name!r}"


def check_services(field: str, mapping: Mapping[str, str], categories: frozenset[str]) -> Iterator[Check]:
    for key in sorted(mapping):
        if mapping[key] not in categories:
            yield field, key, f"unknown category {mapping[key]!r}"


def check_lower_keys(field: str, mapping: Mapping[str, object]) -> Iterator[Check]:
    for key in sorted(mapping):
        if key != key.lower():
            yield field, key, f"keys are matched in lower case; write {key.lower()!r}"


def check_cookie_name(field: str, name: object) -> Iterator[Check]:
    if not isinstance(name, str) or COOKIE_NAME.fullmatch(name) is None:
        yield field, None, f"{name!r} is not a valid cookie name"
