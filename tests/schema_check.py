"""A small JSON Schema checker for the keywords our documented schemas use.

docs/consent-record.schema.json is checked with this rather than a third-party
validator: the keywords are few, and an unknown keyword is an error here, so a schema
cannot silently say more than the tests check.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}
_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
_KNOWN = _ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "uniqueItems",
    "maxItems",
    "pattern",
    "maxLength",
    "minimum",
    "enum",
}


def check(schema: dict[str, Any], value: Any, path: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (empty when it conforms)."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"{path}: schema keyword(s) this checker does not know: {sorted(unknown)}")
    problems: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return [f"{path}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        problems += [f"{path}: missing {key!r}" for key in schema.get("required", ()) if key not in value]
        for key, item in value.items():
            if key in props:
                problems += check(props[key], item, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: unexpected key {key!r}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            problems.append(f"{path}: items are not unique")
        if "items" in schema:
            for i, item in enumerate(value):
                problems += check(schema["items"], item, f"{path}[{i}]")
    if isinstance(value, str):
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: {value} is below {schema['minimum']}")
    return problems
