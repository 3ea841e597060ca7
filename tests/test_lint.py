"""The lint gate runs with the tests: ruff (lint and format) and strict mypy on proxy/, tests/, bench/ and tools/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extra (pip install -e '.[test]')")
    return found


@pytest.mark.lint
@pytest.mark.parametrize(
    "args",
    [
        ["ruff", "check", "proxy", "tests", "bench", "tools"],
        ["ruff", "format", "--check", "proxy", "tests", "bench", "tools"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_lint(args: list[str]) -> None:
    result = subprocess.run([tool(args[0]), *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
