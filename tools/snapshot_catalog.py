"""Write proxy/data/vendors/snapshot.json from the catalogue's TOML files.

The snapshot is the same documents as JSON, which loads several times faster than
Python's TOML reader; tag-gate uses it only while it is stamped with the digest of
the TOML files, so after editing them run:

    python tools/snapshot_catalog.py

(tests/test_catalog.py fails while the shipped snapshot is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.core.catalog_files import SNAPSHOT_NAME, make_snapshot
from proxy.core.vendors import VendorError


def main() -> int:
    folder = Path(__file__).resolve().parent.parent / "proxy" / "data" / "vendors"
    try:
        text = make_snapshot(folder)
    except (VendorError, ValueError) as exc:
        sys.stderr.write(f"snapshot_catalog: {exc}\n")
        return 1
    target = folder / SNAPSHOT_NAME
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
