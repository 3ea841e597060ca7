"""Which of a fixed set of patterns occur somewhere in a document, in one pass (pure).

The gate's pre-scan (`proxy.html.gate.prescan`) asks of a whole document whether each
of about twenty byte strings (`<script`, `<svg`, `background`, ...) and two small
patterns (a `ping=`, a `style` value with `(` or `&`) occur in it, in any ASCII case.
CPython's `bytes.find` costs about 45 µs per 100 KB and needle, so the gate could only
afford two such scans on a large page and registered every other selector blindly.
Hyperscan (Intel's multi-pattern regex matcher, the `hyperscan` package) answers all of
them in one pass over the bytes, each pattern reported once (`HS_FLAG_SINGLEMATCH`),
case-insensitively (`HS_FLAG_CASELESS`), in about the time of one `lower()`.

`Needles(patterns).present(document)` is the set of indices of the patterns that
match, or None where no engine is installed (the package publishes wheels for x86-64
and arm64 Linux and macOS): the caller then scans in Python as before. `ends(document)`
also says where each pattern first matched (the end offset of the match). Only the
package's public API is used; tests/test_needles.py pins the behaviour relied on (ASCII
case folding, one report per pattern, matches at both ends, the regex subset used).
A `Scratch` (Hyperscan's per-scan working memory) must not be shared by two threads
at once: each thread gets its own.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Collection, Sequence
from importlib.metadata import version
from typing import Any

hyperscan: Any
try:
    hyperscan = importlib.import_module("hyperscan")
except ImportError:  # pragma: no cover - pyproject.toml installs it where wheels exist
    hyperscan = None

__all__ = ["ENGINE", "Needles"]

log = logging.getLogger("tag_gate")

ENGINE: str | None = None if hyperscan is None else f"hyperscan {version('hyperscan')}"
"""The matcher in use (None: `Needles.present` answers None)."""


class Needles:
    """A compiled set of byte-regex patterns, all matched case-insensitively (ASCII)."""

    __slots__ = ("_db", "_local", "failures", "patterns")

    def __init__(self, patterns: Sequence[bytes]) -> None:
        self.patterns = tuple(patterns)
        self._local = threading.local()
        self.failures = 0
        """Scans the engine failed (each answered None: the caller scanned in Python)."""
        self._db: Any = None
        if ENGINE is not None and self.patterns:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH
            db.compile(
                expressions=list(self.patterns),
                ids=list(range(len(self.patterns))),
                elements=len(self.patterns),
                flags=[flags] * len(self.patterns),
            )
            self._db = db

    def present(self, document: bytes | memoryview) -> set[int] | None:
        """Indices of the patterns that match somewhere in `document` (None without an
        engine, or when it fails: never an exception, the caller has a slower way)."""
        ends = self.ends(document)
        return None if ends is None else set(ends)

    def any_of(self, document: bytes | memoryview, among: Collection[int]) -> bool | None:
        """Whether any pattern in `among` matches in `document`; the scan stops at the
        first such match (None as for `present`)."""
        db = self._db
        if db is None:
            return None
        found = False

        def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> bool:
            nonlocal found
            found = pattern in among
            return found  # true stops the scan

        if document:
            try:
                db.scan(document, match_event_handler=on_match, scratch=self._scratch())
            except hyperscan.ScanTerminated:
                pass
            except Exception as exc:
                self._failed(exc)
                return None
        return found

    def _scratch(self) -> Any:
        local = self._local
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("pre-scan: %s failed (%s); whole pages are scanned in Python instead", ENGINE, exc)

    def ends(self, document: bytes | memoryview) -> dict[int, int] | None:
        """For each pattern that matches in `document`, the end offset of its first match
        (a scan stops once every pattern has matched); None as for `present`."""
        db = self._db
        if db is None:
            return None
        found: dict[int, int] = {}

        def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> None:
            found[pattern] = end

        if document:
            try:
                db.scan(document, match_event_handler=on_match, scratch=self._scratch())
            except Exception as exc:  # the engine failed: the caller's Python scan decides instead
                self._failed(exc)
                return None
        return found
