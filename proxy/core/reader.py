"""Reading TOML tables into typed values, with every problem kept and its path named.

`Reader` walks one table: each accessor marks its key as known, converts the value with
a converter that raises `ValueError`/`TypeError` naming what is wrong, and records that
message against the key's TOML path (`server.listen: ...`); `finish()` reports the keys
nobody asked for. The converters here are the generic ones every section uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

T = TypeVar("T")

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


class Reader:
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

    def table(self, key: str) -> Reader:
        self._known.add(key)
        value = self._data.get(key, {})
        if not isinstance(value, Mapping):
            self.problem(key, f"expected a table, got {type_name(value)}")
            value = {}
        return Reader(value, self.where(key), self._problems)

    def tables(self, key: str) -> Iterator[Reader]:
        """The entries of an array of tables (`[[key]]`), each with an indexed path."""
        self._known.add(key)
        value = self._data.get(key, [])
        if not isinstance(value, list):
            self.problem(key, f"expected an array of tables ([[{key}]]), got {type_name(value)}")
            return
        for i, item in enumerate(value):
            path = f"{self.where(key)}[{i}]"
            if not isinstance(item, Mapping):
                self._problems.append(f"{path}: expected a table, got {type_name(item)}")
                continue
            yield Reader(item, path, self._problems)

    def finish(self) -> None:
        for key in self._data:
            if key not in self._known:
                self.problem(key, "unknown key")


def type_name(value: object) -> str:
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
        raise TypeError(f"expected true or false, got {type_name(value)}")
    return value


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type_name(value)}")
    return value


def as_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number of seconds, got {type_name(value)}")
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
        raise TypeError(f"expected a whole number, got {type_name(value)}")
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
        raise TypeError(f'expected a size (bytes, or a string like "16MiB"), got {type_name(value)}')
    m = _SIZE_RE.fullmatch(value)
    if not m:
        raise ValueError(f"cannot read {value!r} as a size: use bytes or a unit B, kB, MB, GB, KiB, MiB, GiB")
    number, unit = m.groups()
    size = int(float(number) * _SIZE_UNITS[(unit or "b").lower()])
    if size < 1:
        raise ValueError(f"must be at least 1 byte, got {value!r}")
    return size


def as_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array of strings, got {type_name(value)}")
    bad = [f"[{i}] {type_name(v)}" for i, v in enumerate(value) if not isinstance(v, str)]
    if bad:
        raise TypeError(f"expected strings, got {', '.join(bad)}")
    return tuple(value)


def level(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number from {low} to {high}, got {type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value}")
        return value

    return convert


def one_of(*choices: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        text = as_str(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {text!r}")
        return text

    return convert
