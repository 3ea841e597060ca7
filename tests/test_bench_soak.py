"""The soak script (bench/soak.py) still runs end to end and prints its summary.

A few seconds of its traffic, so the script cannot rot unnoticed; the figures themselves
come from full runs (bench/README.md). It exits 0, or 1 with its "FAIL: ..." lines when a
check fails under --strict (tag-gate's stderr alarms, RSS growth, descriptors, unexpected
outcomes): either is a working script. Anything else (a traceback, exit 2 when tag-gate
or the origin died, a missing section) fails this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_soak_runs_briefly_and_prints_its_summary() -> None:
    command = [sys.executable, str(REPO / "bench" / "soak.py"), "--seconds", "5", "--conns", "8"]
    command += ["--settle", "15", "--strict", "--no-pin"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150)
    out = result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), f"exit {result.returncode}\n{out}\n{result.stderr}"
    for section in (
        "scenario",
        "requests in 5 s",
        "tag-gate RSS (MiB): start",
        "second half",
        "tag-gate open fds: start",
        "tag-gate metrics, change over the run",
        "tag-gate stderr: ",
    ):
        assert section in out, f"{section!r} missing from:\n{out}"
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert total, out
    assert int(total.group(1)) > 20, f"hardly any traffic went through:\n{out}"
    assert int(total.group(2)) > 0, f"no injected fault ran:\n{out}"
    if result.returncode == 0:
        assert "all checks passed" in out and "FAIL:" not in out
    else:
        assert re.search(r"^FAIL: \S.+$", out, re.M), out
