"""Reading the built-in catalogue's files: its TOML, or the snapshot of it (pure, stdlib).

`data/vendors/*.toml` is the catalogue as people write it. Python's TOML reader is
written in Python and takes most of the catalogue's load time, so the package also
ships `data/vendors/snapshot.json`: the same documents as JSON (which the standard
library reads in C), stamped with the SHA-256 of the TOML files they came from.
`load_builtin_catalog` reads the TOML files' bytes, and uses the snapshot only when its
stamp is theirs; otherwise it parses the TOML, so an edited catalogue is never read
from a stale snapshot, only more slowly (tests/test_catalog.py fails until
`python tools/snapshot_catalog.py` writes a fresh one). Either way the documents go
through the same validation (`vendors.parse_catalog`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import tomllib
from collections.abc import Collection, Mapping, Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

from .categories import BUILTIN_CATEGORIES
from .vendors import CatalogMeta, Vendor, VendorError, parse_catalog

__all__ = [
    "SNAPSHOT_NAME",
    "catalog_digest",
    "load_builtin_catalog",
    "load_builtin_vendors",
    "make_snapshot",
    "read_catalog",
]

SNAPSHOT_NAME: Final = "snapshot.json"
_DATE_KEY: Final = "$date"


def _toml_files(folder: Traversable) -> list[tuple[str, bytes]]:
    """`(name, bytes)` of every `*.toml` file in `folder`, in sorted name order."""
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".toml") and e.is_file()), key=lambda e: e.name)
    return [(f"{folder.name}/{e.name}", e.read_bytes()) for e in entries]


def catalog_digest(files: Sequence[tuple[str, bytes]]) -> str:
    """The SHA-256 (hex) of named files, names and contents both."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0" + data)
    return h.hexdigest()


def _decode_toml(files: Sequence[tuple[str, bytes]], problems: list[str]) -> list[tuple[str, Mapping[str, object]]]:
    documents: list[tuple[str, Mapping[str, object]]] = []
    for name, data in files:
        try:
            documents.append((name, tomllib.loads(data.decode("utf-8"))))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: not valid TOML: {exc}")
    return documents


def _encode_value(value: object) -> object:
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return {_DATE_KEY: value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"a {type(value).__name__} value has no snapshot form")


def _decode_object(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and _DATE_KEY in obj:
        return datetime.date.fromisoformat(obj[_DATE_KEY])
    return obj


def make_snapshot(folder: Traversable) -> str:
    """The snapshot text of the TOML files in `folder` (for tools/snapshot_catalog.py).
    Raises VendorError when a file is not valid TOML, ValueError for a value JSON
    cannot carry (a TOML datetime or time; dates are carried)."""
    files = _toml_files(folder)
    problems: list[str] = []
    documents = _decode_toml(files, problems)
    if problems:
        raise VendorError(problems)
    snapshot = {
        "about": "The documents of the *.toml files beside this one, as JSON for a fast load; written by "
        "tools/snapshot_catalog.py and used only while 'digest' is the SHA-256 of those files.",
        "digest": catalog_digest(files),
        "documents": [[name, _encode_value(doc)] for name, doc in documents],
    }
    return json.dumps(snapshot, ensure_ascii=False, separators=(",", ":")) + "\n"


def _snapshot_documents(folder: Traversable, digest: str) -> list[tuple[str, Mapping[str, object]]] | None:
    """The snapshot's documents when it is there, well-formed and stamped `digest`."""
    try:
        data = json.loads((folder / SNAPSHOT_NAME).read_bytes(), object_hook=_decode_object)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("digest") != digest or not isinstance(data.get("documents"), list):
        return None
    documents: list[tuple[str, Mapping[str, object]]] = []
    for item in data["documents"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict)):
            return None
        documents.append((item[0], item[1]))
    return documents


def read_catalog(
    folder: Traversable, categories: Collection[str], *, require_source: bool = False, snapshot: bool = False
) -> tuple[CatalogMeta, tuple[Vendor, ...]]:
    """Read every `*.toml` file in `folder`, in sorted name order, and validate them
    together with `parse_catalog` (`require_source` is passed on). With `snapshot`, the
    documents come from `folder/snapshot.json` when it is stamped with these files'
    digest.

    Problems are prefixed `<folder name>/<file name>: `; a file that is not valid
    TOML or UTF-8 is reported with the parser's message, and the other files are
    still checked. Raises VendorError listing every problem.
    """
    files = _toml_files(folder)
    problems: list[str] = []
    documents = _snapshot_documents(folder, catalog_digest(files)) if snapshot else None
    if documents is None:
        documents = _decode_toml(files, problems)
    try:
        result = parse_catalog(documents, categories, require_source=require_source)
    except VendorError as exc:
        raise VendorError([*problems, *exc.problems]) from None
    if problems:
        raise VendorError(problems)
    return result


@cache
def load_builtin_catalog() -> tuple[CatalogMeta, tuple[Vendor, ...]]:
    """Read and validate the package's `data/vendors/*.toml` (through the snapshot when
    it is fresh), once per process."""
    folder = resources.files("proxy") / "data" / "vendors"
    return read_catalog(folder, BUILTIN_CATEGORIES, require_source=True, snapshot=True)


def load_builtin_vendors() -> tuple[Vendor, ...]:
    """The built-in vendors, in file order (read once per process)."""
    return load_builtin_catalog()[1]
