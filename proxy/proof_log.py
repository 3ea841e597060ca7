"""The proof-of-consent sink: one JSON line per decision, to stdout or a rotated file.

Contract:
- `ProofSink.write(record)` never blocks and never raises: lines gather on the event loop
  and a writer thread writes them (`proxy.logs.AccessLog` and its `LineWriter`, the
  access log's machinery); a stream that does not keep up, or fails, drops lines and
  counts them (`dropped`, exported as `tag_gate_log_dropped_total{stream="proof"}`),
  and a failing file is logged (at most once a minute), never fatal to a request.
- `stdout`: the lines go through the access log's own writer when the access log is on,
  so the two never interleave inside a line (their lines are told apart by `"event":
  "consent"`; a line lost there counts with the access log's); otherwise through a
  writer of their own.
- `file`: appended to `proof_file`; past `proof_max_size` bytes the file is renamed
  `<file>.1` (older ones shift to `.2`, ... and the oldest past `proof_keep` is
  deleted) and a new one started. One process writes one file: with several worker
  processes give each its own file, or use stdout.
- The line's format: docs/consent-proof.schema.json.

`RateLimiter` holds the endpoint's per-client and per-process budgets; like the sink it
lives as long as the process (a reload keeps both, unless the sink's settings change).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Final

from .core.banner import BannerSettings
from .logs import AccessLog

log = logging.getLogger("tag_gate")

FAILURE_LOG_INTERVAL: Final = 60.0
"""Seconds between two log lines about a failing proof file."""

PROOF_CAPACITY: Final = 1 << 20
"""Most characters of proof lines waiting for their stream (about 3,000 lines)."""

GLOBAL_PER_SECOND: Final = 1000
"""Records one process accepts per second, whoever sends them."""

MAX_CLIENTS: Final = 10_000
"""Client addresses whose rate is remembered (the least recently seen are forgotten)."""


class RateLimiter:
    """Token buckets: one per client address (`per_minute` tokens, refilled evenly over
    a minute) and one for the process (`GLOBAL_PER_SECOND`). Bounded: at most
    `MAX_CLIENTS` addresses are remembered."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max = max_clients
        self._global = (float(GLOBAL_PER_SECOND), 0.0)

    @staticmethod
    def _take(state: tuple[float, float], capacity: float, per_second: float, now: float) -> tuple[bool, float]:
        tokens, last = state
        tokens = min(capacity, tokens + (now - last) * per_second) if last else capacity
        if tokens < 1:
            return False, tokens
        return True, tokens - 1

    def allow(self, client: str, per_minute: int, now: float) -> bool:
        ok, tokens = self._take(self._global, GLOBAL_PER_SECOND, GLOBAL_PER_SECOND, now)
        self._global = (tokens, now)
        if not ok:
            return False
        clients = self._clients
        state = clients.pop(client, (0.0, 0.0))
        ok, tokens = self._take(state, per_minute, per_minute / 60, now)
        clients[client] = (tokens, now)
        if len(clients) > self._max:
            clients.popitem(last=False)
        return ok


class RotatingFile:
    """A text stream over an append-only file, rotated by size; written by one thread.

    It has no `fileno()`, so `LineWriter` calls `write` and `flush`. A failure (disk
    full, a deleted directory) raises after being logged; the next write opens the
    file again, so the sink recovers when the file system does."""

    encoding = "utf-8"

    def __init__(self, path: str, max_size: int, keep: int) -> None:
        self.path = Path(path)
        self.max_size = max_size
        self.keep = keep
        self._file: IO[str] | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._last_failure = -FAILURE_LOG_INTERVAL
        self.failures = 0

    def fileno(self) -> int:
        raise OSError("rotated: written through write()")

    def write(self, text: str) -> int:
        with self._lock:
            try:
                if self._file is None:
                    self._open()
                assert self._file is not None
                if self._size and self._size + len(text) > self.max_size:
                    self._rotate()
                written = self._file.write(text)
                self._size += len(text.encode("utf-8"))
                return written
            except OSError as exc:
                self._fail(exc)
                raise

    def flush(self) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.flush()
            except OSError as exc:
                self._fail(exc)
                raise

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None

    def _open(self) -> None:
        self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 (held open)
        self._size = self._file.tell()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        if oldest.exists():
            oldest.unlink()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _fail(self, exc: OSError) -> None:
        self.failures += 1
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        now = time.monotonic()
        if now - self._last_failure >= FAILURE_LOG_INTERVAL:
            self._last_failure = now
            log.error(
                "proof-of-consent file %s cannot be written (%s); lines are dropped and counted "
                '(tag_gate_log_dropped_total{stream="proof"}) until it can',
                self.path,
                exc.strerror or exc,
            )


class ProofSink:
    """Where proof-of-consent lines go for one set of sink settings (see the module docstring)."""

    def __init__(self, lines: AccessLog, *, owned: bool, key: tuple[Any, ...], file: RotatingFile | None = None):
        self._lines = lines
        self._owned = owned
        self.key = key
        """The settings it was made for (a reload with other settings makes a new sink)."""
        self.file = file

    def write(self, record: dict[str, Any]) -> None:
        """Queue one line; never waits, never raises."""
        self._lines.write(record)

    @property
    def dropped(self) -> int:
        """Lines this sink's own writer dropped (0 when it shares the access log's)."""
        return self._lines.dropped if self._owned else 0

    def flush(self, timeout: float = 0.5) -> bool:
        """Hand over what is gathered and wait (bounded) until written. Tests and shutdown."""
        return self._lines.flush(timeout)

    async def close(self) -> None:
        if self._owned:
            await self._lines.close()
        if self.file is not None:
            self.file.close()


def sink_key(settings: BannerSettings) -> tuple[Any, ...]:
    return (settings.enabled, settings.proof_sink, settings.proof_file, settings.proof_max_size, settings.proof_keep)


def make_proof_sink(settings: BannerSettings, access_log: AccessLog, stdout: IO[str] | None = None) -> ProofSink | None:
    """The sink for `[banner]`, or None when the banner is off or `proof_sink = "off"`.
    `stdout` stands in for sys.stdout (tests)."""
    key = sink_key(settings)
    if not settings.enabled or settings.proof_sink == "off":
        return None
    if settings.proof_sink == "file":
        file = RotatingFile(settings.proof_file, settings.proof_max_size, settings.proof_keep)
        stream: Any = file  # a text stream in every respect LineWriter uses
        return ProofSink(AccessLog(stream, capacity=PROOF_CAPACITY), owned=True, key=key, file=file)
    if access_log.enabled and stdout is None:
        return ProofSink(access_log, owned=False, key=key)
    return ProofSink(AccessLog(stdout or sys.stdout, capacity=PROOF_CAPACITY), owned=True, key=key)
