"""The pure core imports neither aiohttp nor the lol-html binding (DESIGN.md: pure core, thin shell)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "proxy.consent",
    "proxy.tcf",
    "proxy.policy",
    "proxy.cookies",
    "proxy.catalog",
    "proxy.config",
    "proxy.categories",
    "proxy.defer",
    "proxy.encoding",
    "proxy.banner",
    "proxy.guard",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_libraries(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'lolhtml', 'multidict', 'yarl'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"


def test_only_rewrite_imports_the_binding() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "proxy"
    importers = sorted(p.name for p in root.glob("*.py") if "import lolhtml" in p.read_text())
    assert importers == ["rewrite.py"]
